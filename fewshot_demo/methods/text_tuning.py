"""Fine-tuning the top of a text encoder on a support set (the training loop, apart from the learner).

SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts") fine-tunes a sentence
encoder contrastively, then fits logistic regression on the tuned embeddings. Its cost on a CPU comes
from how the pairs are fed: it generates 20 pairs per example and runs them in batches of 16 through
the whole network (about 100 steps and 27 s for 5 x 8 short texts). Here the same objective, the
squared error between a pair's cosine similarity and 1 (same class) or 0 (different classes), is taken
over *all* pairs of a batch at once from one forward pass, with positive and negative pairs weighted
equally, and only the top ``trainable_layers`` transformer layers are adapted: the layers below are run
once, under inference mode, and their outputs cached. Each step trains on a random crop of at most
``crop_tokens`` tokens of every text in the batch, cut from those cached states: a step then costs the
same for a news article as for a tweet (short texts are used whole), and the crops of a long text
vary from step to step. The same loop with ``loss="cross_entropy"`` trains a cosine classifier
initialised from the class prototypes instead ("plain" fine-tuning).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.options import bounded

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of the encoder fine-tune.

    Attributes:
        trainable_layers: how many top transformer layers are adapted; the rest stay frozen.
        steps: optimisation steps (each over a batch of up to ``batch_size`` support texts), or None
            for ``auto_steps``: one step per two support texts, between 5 and 20 (a 5 x 1 support set
            has only 10 pairs and is learnt in a few steps; SetFit scales its pairs the same way).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        loss: "contrastive" (SetFit's cosine-similarity loss over all pairs of a batch) or
            "cross_entropy" (a cosine classifier on the pooled embeddings).
        batch_size: support texts per step; the whole support set when it is smaller.
        crop_tokens: each step reads a random span of at most this many tokens of each text (from one
            of its windows). Bounds the cost of a step for long texts; 64 tokens of a news article
            carry its topic.
        max_seconds: stop early after this much training time; a safety net that a fit of the default
            steps does not reach on a 2-core CPU, so results do not depend on the machine's load.
        seed: seeds dropout and batch sampling, so a fit is repeatable.
    """

    trainable_layers: int = bounded(2, 1, 24)
    steps: int | None = bounded(None, 0, 200, "Fine-tuning steps (unset: automatic)")
    learning_rate: float = bounded(1e-4, 1e-7, 1.0)
    weight_decay: float = bounded(0.01, 0.0, 10.0)
    loss: str = bounded("contrastive", label="Fine-tuning loss", choices=("contrastive", "cross_entropy"))
    batch_size: int = bounded(64, 1, 512)
    crop_tokens: int = bounded(64, 2, 1024)
    max_seconds: float = bounded(120.0, 1.0, 600.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in ("contrastive", "cross_entropy"):
            raise UserInputError(f"unknown fine-tune loss {self.loss!r}; use 'contrastive' or 'cross_entropy'")
        if self.trainable_layers < 1 or self.crop_tokens < 2 or (self.steps is not None and self.steps < 0):
            raise UserInputError(
                "trainable_layers must be >= 1, crop_tokens >= 2 and steps >= 0 (or None for automatic)"
            )

    def steps_for(self, n_support: int) -> int:
        """The number of steps for ``n_support`` texts: ``steps``, or ``auto_steps`` when it is None."""
        return auto_steps(n_support) if self.steps is None else self.steps


def auto_steps(n_support: int) -> int:
    """One step per two support texts, at least 5 and at most 20."""
    return min(20, max(5, n_support // 2))


def _layers(model: nn.Module) -> nn.ModuleList | None:
    """The transformer layer list of a BERT-like model, or None for other layouts."""
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    return layers if isinstance(layers, nn.ModuleList) else None


class TopLayers(nn.Module):
    """The top k layers of a BERT-like encoder, run on the cached output of the layers below.

    Args:
        model: the full (frozen) encoder; its top layers are deep-copied, never modified.
        k: how many top layers to copy.
    """

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        layers = _layers(model)
        if layers is None:
            raise UserInputError(f"{type(model).__name__} has no encoder.layer list to split")
        self.k = min(k, len(layers))
        self.first = len(layers) - self.k  # index of the hidden state that feeds the copied layers
        self.layers = copy.deepcopy(layers[self.first :])
        self.layers.requires_grad_(True)
        self.config = model.config

    def _mask(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        from transformers.masking_utils import (
            create_bidirectional_mask,  # deferred: transformers takes seconds
        )

        return create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Map (n, L, d) states entering layer ``first`` to (n, L, d) last hidden states."""
        mask = self._mask(hidden, attention_mask)
        for layer in self.layers:
            output = layer(hidden, mask)
            hidden = output[0] if isinstance(output, tuple) else output
        return hidden


@torch.inference_mode()
def frozen_states(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, layers: Sequence[int],
                  batch_size: int = 32) -> list[Tensor]:
    """Run the frozen encoder once; return the hidden states of the requested layers.

    Args:
        model: the frozen encoder.
        input_ids, attention_mask: (n, L) tokens.
        layers: indices into the model's hidden states (0 = embeddings output, -1 = last layer).

    Returns:
        One (n, L, d) tensor per entry of ``layers``, on the model's device.
    """
    device = next(model.parameters()).device
    kept: list[list[Tensor]] = [[] for _ in layers]
    for start in range(0, len(input_ids), batch_size):
        output = model(
            input_ids=input_ids[start : start + batch_size].to(device),
            attention_mask=attention_mask[start : start + batch_size].to(device),
            output_hidden_states=True,
        )
        for chunks, layer in zip(kept, layers):
            chunks.append(output.hidden_states[layer])
    return [torch.cat(chunks).clone() for chunks in kept]


def contrastive_loss(embeddings: Tensor, labels: Tensor) -> Tensor:
    """SetFit's cosine-similarity loss over every pair of a batch, positives and negatives weighted equally.

    Args:
        embeddings: (n, d) L2-normalised embeddings.
        labels: (n,) class labels.

    Returns:
        Scalar: mean over positive pairs of (cos - 1)^2 plus mean over negative pairs of cos^2.
    """
    similarity = embeddings @ embeddings.T  # (n, n)
    same = labels[:, None] == labels[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    positive, negative = same & upper, ~same & upper
    loss = similarity[negative].pow(2).mean() if negative.any() else similarity.new_zeros(())
    if positive.any():
        loss = loss + (similarity[positive] - 1).pow(2).mean()
    return loss


def random_crops(
    batch: Tensor,
    owner: Tensor,
    states: Tensor,
    attention_mask: Tensor,
    crop_tokens: int,
    generator: torch.Generator,
    from_start: bool = False,
) -> tuple[Tensor, Tensor]:
    """One random span of at most ``crop_tokens`` tokens per text of ``batch``, from one of its windows.

    Args:
        batch: (b,) support text indices.
        owner: (m,) the text of each window, ascending.
        states, attention_mask: (m, L, d) cached states and (m, L) mask of all windows.
        crop_tokens: the longest span.
        generator: draws the windows and the spans' starts.
        from_start: start every span at its window's first token (for [CLS] pooling).

    Returns:
        (b, c, d) states and (b, c) mask of the spans, c <= crop_tokens; a text no longer than
        ``crop_tokens`` comes whole.
    """
    device = states.device
    counts = torch.bincount(owner, minlength=int(batch.max()) + 1).cpu()  # windows per text
    first = counts.cumsum(0) - counts
    batch = batch.cpu()
    draws = torch.rand(2, len(batch), generator=generator)
    window = first[batch] + (draws[0] * counts[batch]).long().clamp(max=counts[batch] - 1)
    lengths = attention_mask[window.to(device)].sum(dim=1).cpu()
    span = min(crop_tokens, int(lengths.max()))
    start = torch.zeros_like(lengths) if from_start else (draws[1] * (lengths - span + 1).clamp_min(1)).long()
    offsets = torch.arange(span)
    positions = (start[:, None] + offsets).clamp(max=states.shape[1] - 1)  # (b, span)
    mask = (offsets[None] < (lengths - start)[:, None]).to(attention_mask.dtype)
    return states[window[:, None].to(device), positions.to(device)], mask.to(device)


def finetune_top_layers(
    top: TopLayers,
    states: Tensor,
    attention_mask: Tensor,
    labels: Tensor,
    pool: Callable[[Tensor, Tensor, Tensor], Tensor],
    config: FinetuneConfig,
    progress: ProgressCallback | None = None,
    owner: Tensor | None = None,
    crop_from_start: bool = False,
) -> list[float]:
    """Adapt ``top`` in place on a support set.

    Args:
        top: the trainable top layers.
        states: (m, L, d) frozen states entering ``top``, for the m windows of the support texts.
        attention_mask: (m, L).
        labels: (n_support,) labels in 0..n_way-1.
        pool: maps (m, L, d) states, the (m, L) mask and the (m,) text of each window to (n, d)
            L2-normalised text embeddings.
        config: steps, learning rate, loss.
        progress: called with (fraction done, message) after each step.
        owner: (m,) the support text of each window, ascending; None when each window is a whole text.
        crop_from_start: crops start at their window's first token (see ``random_crops``).

    Returns:
        The loss of each step taken.
    """
    device = states.device
    attention_mask = attention_mask.to(device)
    n_support = len(labels)
    owner = torch.arange(n_support, device=device) if owner is None else owner.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout masks
    n_way = int(labels.max()) + 1
    parameters = list(top.parameters())
    scale = None
    if config.loss == "cross_entropy":
        with torch.no_grad():
            top.eval()
            start = pool(top(states, attention_mask), attention_mask, owner)
            prototypes = torch.zeros(n_way, start.shape[1], device=device).index_add_(0, labels, start)
        classifier = nn.Parameter(F.normalize(prototypes, dim=-1))
        scale = 20.0
        parameters.append(classifier)
    optimizer = torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True  # one op per step, not per tensor
    )
    top.train()
    losses: list[float] = []
    began = time.perf_counter()
    n_steps = config.steps_for(n_support)
    for step in range(n_steps):
        if n_support > config.batch_size:
            batch = torch.randperm(n_support, generator=generator)[: config.batch_size].to(device)
        else:
            batch = torch.arange(n_support, device=device)
        crops, crop_mask = random_crops(
            batch, owner, states, attention_mask, config.crop_tokens, generator, crop_from_start
        )
        embeddings = pool(top(crops, crop_mask), crop_mask, torch.arange(len(batch), device=device))  # (b, d)
        if config.loss == "contrastive":
            loss = contrastive_loss(embeddings, labels[batch])
        else:
            logits = scale * embeddings @ F.normalize(classifier, dim=-1).T  # (b, n_way)
            loss = F.cross_entropy(logits, labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if progress is not None:
            progress((step + 1) / n_steps, f"fine-tuning step {step + 1}/{n_steps}, loss {losses[-1]:.3f}")
        if time.perf_counter() - began > config.max_seconds:
            if progress is not None:
                progress(1.0, f"stopped after {step + 1} steps: the {config.max_seconds:.0f} s budget is used")
            break
    top.eval()
    return losses
