"""Fine-tuning a text encoder on the support set, then a linear head: SetFit-style, on the learner contract."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from fewshot_demo.config.errors import InputKindUnsupportedError, UserInputError
from fewshot_demo.encoders.text import (
    BUNDLED_ENCODER,
    ENCODERS,
    TextEncoder,
    load_encoder,
    pool,
)
from fewshot_demo.encoders.text_pooling import unpack_tokens
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.text_tuning import (
    FinetuneConfig,
    ProgressCallback,
    TopLayers,
    finetune_top_layers,
    frozen_states,
)

#: Windows x padded length of the support texts a fine-tune may hold: their cached states at three
#: layers take about 0.5 GB with MiniLM (the BBC 5 x 8 support set takes about 23,000).
MAX_FINETUNE_TOKENS = 100_000


class TextFinetune(FewShotLearner):
    """SetFit-style fine-tuning (Tunstall et al. 2022) of the top encoder layers, then a linear probe.

    Consumes token tensors, not frozen features: ``input_kind = "tokens"``, so callers get its inputs
    from ``encoder.prepare("tokens", texts)`` -> (n, windows, 2, seq_len) ids and attention masks. ``fit``
    adapts a copy of the encoder's top ``config.trainable_layers`` layers with the contrastive
    (or cross-entropy) loss of ``fewshot_demo.methods.text_tuning``, then fits ``LinearProbe`` on the tuned,
    pooled embeddings of the support texts. With an encoder id of pooling "layers" (``minilm:layers``)
    the head reads the tuned last layer next to the frozen middle layer, as the frozen features do.
    The shared encoder itself is never modified.

    Args:
        encoder: the frozen text encoder whose top layers are tuned.
        config: the fine-tune settings; see ``FinetuneConfig``.
        progress: optional ``(fraction, message)`` callback, called after each training step.
    """

    def __init__(
        self, encoder: "TextEncoder", config: FinetuneConfig | None = None, progress: ProgressCallback | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.finetune_config = config or FinetuneConfig()
        self.progress = progress
        self.top: TopLayers | None = None
        self.head = LinearProbe()
        self.losses: list[float] = []

    def _pool(self, hidden: Tensor, attention_mask: Tensor, owner: Tensor) -> Tensor:
        """The (n, d) embedding the fine-tune trains: the last layer's, mean-pooled for "layers" pooling."""
        pooling = "mean" if self.encoder.pooling == "layers" else self.encoder.pooling
        return pool(hidden, attention_mask, pooling, owner=owner)

    def _frozen_layers(self) -> list[int]:
        """Hidden states read from the frozen encoder: the input of the top layers, the last one, and
        for "layers" pooling the middle one (frozen, below the tuned layers)."""
        layers = [self.top.first, -1]
        if self.encoder.pooling == "layers":
            if self.encoder.middle_layer > self.top.first:
                raise UserInputError(
                    f"'layers' pooling reads the frozen middle layer {self.encoder.middle_layer}; tune at most "
                    f"{self.encoder.model.config.num_hidden_layers - self.encoder.middle_layer} top layers"
                )
            layers.append(self.encoder.middle_layer)
        return layers

    def _features(self, tuned: Tensor, attention_mask: Tensor, frozen: list[Tensor], owner: Tensor) -> Tensor:
        """What the head reads: the tuned embedding, or for "layers" pooling the tuned last layer and the
        frozen middle layer, pooled over each text's windows as the frozen encoder's features are
        (``encoders.pool``)."""
        middle = frozen[2] if self.encoder.pooling == "layers" else None  # see _frozen_layers
        return pool(tuned, attention_mask, self.encoder.pooling, middle, owner)  # (n, feature_dim)

    def _new_top(self) -> TopLayers:
        try:
            return TopLayers(self.encoder.model, self.finetune_config.trainable_layers)
        except ValueError as error:
            raise UserInputError(f"fine-tuning is not supported for the {self.encoder.id!r} encoder: {error}") from None

    def fit(self, support: Tensor, support_labels: Tensor) -> "TextFinetune":
        self.n_way = check_support(support, support_labels)
        input_ids, attention_mask, owner = unpack_tokens(support)
        if input_ids.numel() > MAX_FINETUNE_TOKENS:  # the frozen states of all of them are kept in memory
            raise UserInputError(
                f"fine-tuning keeps at most {MAX_FINETUNE_TOKENS:,} tokens of example text in memory; these "
                f"{len(support)} examples take {input_ids.numel():,} (padded to their longest). Use fewer or "
                "shorter examples, or the 'linear' method, which has no such limit"
            )
        self.top = self._new_top()
        device = next(self.encoder.model.parameters()).device
        self.top.to(device)
        frozen = frozen_states(self.encoder.model, input_ids, attention_mask, self._frozen_layers())
        states, last = frozen[0], frozen[1]
        attention_mask, labels, owner = attention_mask.to(device), support_labels.to(device), owner.to(device)
        with torch.no_grad():  # the split must reproduce the encoder before any training
            self.top.eval()
            try:
                reproduced = torch.allclose(self.top(states[:4], attention_mask[:4]), last[:4], atol=1e-3)
            except (TypeError, RuntimeError, IndexError):  # a layer that needs more than (hidden, mask)
                reproduced = False
            if not reproduced:
                raise UserInputError(
                    f"fine-tuning is not supported for the {self.encoder.id!r} encoder's layer layout; "
                    "use a BERT-family encoder such as the bundled 'minilm'"
                )
        self.losses = finetune_top_layers(
            self.top, states, attention_mask, labels, self._pool, self.finetune_config, self.progress, owner,
            crop_from_start=self.encoder.pooling == "cls",
        )
        with torch.no_grad():
            embeddings = self._features(self.top(states, attention_mask), attention_mask, frozen, owner)  # (n_support, feature_dim)
        self.head.fit(embeddings, labels)
        return self

    @torch.no_grad()
    def embed(self, tokens: Tensor, batch_size: int = 32) -> Tensor:
        """Return (n, feature_dim) embeddings of (n, windows, 2, seq_len) token tensors from the tuned encoder."""
        self._require_fitted()
        assert self.top is not None
        chunks = []
        for start in range(0, len(tokens), batch_size):
            input_ids, attention_mask, owner = unpack_tokens(tokens[start : start + batch_size])
            frozen = frozen_states(self.encoder.model, input_ids, attention_mask, self._frozen_layers())
            attention_mask, owner = attention_mask.to(frozen[0].device), owner.to(frozen[0].device)
            chunks.append(self._features(self.top(frozen[0], attention_mask), attention_mask, frozen, owner))
        return torch.cat(chunks) if chunks else torch.empty(0, self.encoder.feature_dim)

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        return self.head.predict_proba(self.embed(query))  # (n_query, n_way)

    def state_dict(self) -> dict[str, Tensor]:
        assert self.top is not None
        return {
            **{f"top.{k}": v.detach() for k, v in self.top.layers.state_dict().items()},
            **{f"head.{k}": v for k, v in self.head.state_dict().items()},
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        top = self._new_top()
        top.layers.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("top.")})
        device = next(self.encoder.model.parameters()).device
        self.top = top.to(device).eval()
        self.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        self.n_way = self.head.n_way

    def config(self) -> dict[str, Any]:
        return {"finetune": asdict(self.finetune_config), "head": self.head.config()}


def make_text_finetune(encoder_id: str, device: torch.device, config: FinetuneConfig | None = None) -> TextFinetune:
    """Build a ``TextFinetune`` on the shared encoder ``encoder_id`` (the bundled one when empty).

    Raises:
        InputKindUnsupportedError: when ``encoder_id`` is not a text encoder (fine-tuning needs one).
    """
    encoder_id = encoder_id or BUNDLED_ENCODER
    if encoder_id.partition(":")[0] not in ENCODERS:
        raise InputKindUnsupportedError(
            f"the text finetune method fine-tunes a text encoder; {encoder_id!r} is not one "
            f"(choose from {', '.join(ENCODERS)})"
        )
    return TextFinetune(load_encoder(encoder_id, device), config)
