"""Fine-tuning the last block of a pretrained image backbone, plus a new head, on the support set."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_demo.features import class_means
from fewshot_demo.methods.base import FewShotLearner, check_support

#: The input kind of this learner: the activations entering the backbone's last stage, computed once
#: per image by ``ImageBackbone.prepare("last_block_input", images)``.
LAST_BLOCK_INPUT = "last_block_input"


@dataclass(frozen=True)
class ImageFinetuneConfig:
    """Settings of one fine-tuning run per episode.

    Attributes:
        steps: full-batch Adam steps on the support set (each is a forward and backward pass of the
            last block for every support image).
        learning_rate: Adam step size for the copied backbone layers.
        head_learning_rate: Adam step size for the new head (class directions and scale).
        initial_scale: starting softmax scale of the cosine head.
    """

    steps: int = 5
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-2
    initial_scale: float = 10.0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be 0 or more, got {self.steps}")
        if self.learning_rate <= 0 or self.head_learning_rate <= 0 or self.initial_scale <= 0:
            raise ValueError("learning rates and initial_scale must be positive")


def last_stage(model: nn.Module) -> nn.Sequential:
    """Return a trainable deep copy of an EfficientNet-style network's last stage.

    The copy is ``blocks[-1]``, ``conv_head``, ``bn2`` (BatchNorm and activation) and global average
    pooling: (n, c, h, w) activations entering the last block -> (n, feature_dim) pooled features,
    the same features the frozen backbone outputs (before its flip averaging).

    Raises:
        ValueError: when the network is not EfficientNet-style (no ``blocks``/``conv_head``/``bn2``).
    """
    if not all(hasattr(model, name) for name in ("blocks", "conv_head", "bn2")):
        raise ValueError(
            f"fine-tuning the last block is implemented for EfficientNet-style backbones, not {type(model).__name__}; "
            "use the bundled efficientnet_lite0 backbone, or 'linear' / 'baselinepp' on frozen features"
        )
    tail = nn.Sequential(
        copy.deepcopy(model.blocks[-1]),
        copy.deepcopy(model.conv_head),
        copy.deepcopy(model.bn2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return tail.requires_grad_(True)


class ImageFinetune(FewShotLearner):
    """Fine-tuning baseline ("A Closer Look at Few-shot Classification", Chen et al., ICLR 2019).

    The transfer-learning recipe: keep a pretrained backbone, train a new classifier on the novel
    support set and let the top of the backbone adapt too. Per episode this learner copies the
    backbone's last stage (last block, head convolution and its BatchNorm), puts a new cosine head on
    it (initialised at the class prototypes, so step 0 is a cosine-prototype classifier: the
    "linear probe, then fine-tune" order of Kumar et al. 2022), and trains both with Adam for
    ``steps`` full-batch steps. BatchNorm keeps its pretrained statistics (25 images are too few to
    estimate them). Fine-tuning the whole network per episode is not affordable on a CPU and would
    prevent caching, so the earlier stages stay frozen and their output is cached per image.

    Consumes ``input_kind = "last_block_input"``: (n, c, h, w) activations from
    ``ImageBackbone.prepare``; for EfficientNet-Lite0 (n, 192, 7, 7).

    Args:
        backbone_model: the pretrained network (its last stage is copied, never modified).
        config: training settings; see ``ImageFinetuneConfig``.
    """

    name = "finetune"
    input_kind = LAST_BLOCK_INPUT

    def __init__(self, backbone_model: nn.Module, config: ImageFinetuneConfig | None = None) -> None:
        super().__init__()
        self.backbone_model = backbone_model
        self.settings = config or ImageFinetuneConfig()
        last_stage(backbone_model)  # fail early, at construction, for an unsupported backbone
        self.tail: nn.Sequential | None = None
        self.weight: Tensor | None = None  # (n_way, feature_dim)
        self.log_scale: Tensor | None = None  # ()
        self.losses: list[float] = []

    def _logits(self, inputs: Tensor) -> Tensor:
        assert self.tail is not None and self.weight is not None and self.log_scale is not None
        pooled = F.normalize(self.tail(inputs), dim=1)  # (n, feature_dim)
        return self.log_scale.exp() * pooled @ F.normalize(self.weight, dim=1).T  # (n, n_way)

    def fit(self, support: Tensor, support_labels: Tensor) -> "ImageFinetune":
        """Fine-tune on (n_support, c, h, w) last-block inputs with (n_support,) labels in 0..n_way-1."""
        if support.ndim != 4:
            raise ValueError(
                f"image fine-tuning consumes (n, c, h, w) activations from the backbone's "
                f"prepare('{LAST_BLOCK_INPUT}', images), got shape {tuple(support.shape)}"
            )
        self.n_way = check_support(support, support_labels)
        device = support.device
        self.tail = last_stage(self.backbone_model).to(device).eval()  # eval: BatchNorm keeps its statistics
        with torch.no_grad():
            start = F.normalize(self.tail(support), dim=1)  # (n_support, feature_dim)
        settings = self.settings
        with torch.enable_grad():
            self.weight = class_means(start, support_labels, self.n_way).clone().requires_grad_()
            self.log_scale = torch.tensor(float(settings.initial_scale), device=device).log().requires_grad_()
            optimizer = torch.optim.Adam([
                {"params": list(self.tail.parameters()), "lr": settings.learning_rate},
                {"params": [self.weight, self.log_scale], "lr": settings.head_learning_rate},
            ])
            self.losses = []
            for _ in range(settings.steps):
                loss = F.cross_entropy(self._logits(support), support_labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                self.losses.append(float(loss.detach()))
        self.tail.requires_grad_(False)
        self.weight, self.log_scale = self.weight.detach(), self.log_scale.detach()
        return self

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        """Return (n_query, n_way) probabilities for (n_query, c, h, w) last-block inputs."""
        self._require_fitted()
        return torch.softmax(self._logits(query), dim=1)

    def config(self) -> dict[str, Any]:
        return asdict(self.settings)


def make_image_finetune(backbone_id: str, device: torch.device, **overrides: Any) -> ImageFinetune:
    """Build an ``ImageFinetune`` on the shared backbone ``backbone_id`` with ``ImageFinetuneConfig`` overrides.

    Raises:
        ValueError: for the ``pixels28`` "backbone" (nothing pretrained to fine-tune) or an unknown option.
    """
    from fewshot_demo.backbones import load_backbone

    if backbone_id == "pixels28":
        raise ValueError(
            "finetune adapts a pretrained backbone; pixels28 has none. Use a pretrained image backbone, "
            "or maml / maml_scratch for networks trained on raw pixels"
        )
    known = set(ImageFinetuneConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown finetune option(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    backbone = load_backbone(backbone_id, device)
    return ImageFinetune(backbone.model, ImageFinetuneConfig(**overrides))
