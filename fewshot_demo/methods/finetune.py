"""Fine-tuning the last block of a pretrained image backbone, plus a new head, on the support set."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_demo.config.errors import InputKindUnsupportedError, UserInputError
from fewshot_demo.config.options import bounded
from fewshot_demo.encoders.image import BACKBONES, load_backbone
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.features import class_means

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

    steps: int = bounded(5, 0, 100, "Fine-tuning steps")
    learning_rate: float = bounded(1e-4, 1e-7, 1.0)
    head_learning_rate: float = bounded(1e-2, 1e-7, 10.0)
    initial_scale: float = bounded(10.0, 1e-3, 1000.0)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise UserInputError(f"steps must be 0 or more, got {self.steps}")
        if self.learning_rate <= 0 or self.head_learning_rate <= 0 or self.initial_scale <= 0:
            raise UserInputError("learning rates and initial_scale must be positive")


def last_stage(model: nn.Module) -> nn.Sequential:
    """Return a trainable deep copy of an EfficientNet-style network's last stage.

    The copy is ``blocks[-1]``, ``conv_head``, ``bn2`` (BatchNorm and activation) and global average
    pooling: (n, c, h, w) activations entering the last block -> (n, feature_dim) pooled features,
    the same features the frozen backbone outputs (before its flip averaging).

    Raises:
        UserInputError: when the network is not EfficientNet-style (no ``blocks``/``conv_head``/``bn2``).
    """
    if not all(hasattr(model, name) for name in ("blocks", "conv_head", "bn2")):
        raise UserInputError(
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

    def __init__(self, backbone_model: nn.Module, config: ImageFinetuneConfig | None = None) -> None:
        super().__init__()
        self.backbone_model = backbone_model
        self.settings = config or ImageFinetuneConfig()
        last_stage(backbone_model)  # fail early, at construction, for an unsupported backbone
        self.tail: nn.Sequential | None = None
        self.weight: Tensor | None = None  # (n_way, feature_dim)
        self.log_scale: Tensor | None = None  # ()
        self.losses: list[float] = []
        #: Optional ``(fraction, message)`` callback, called after each training step.
        self.progress: Callable[[float, str], None] | None = None

    def _logits(self, inputs: Tensor) -> Tensor:
        assert self.tail is not None and self.weight is not None and self.log_scale is not None
        pooled = F.normalize(self.tail(inputs), dim=1)  # (n, feature_dim)
        return self.log_scale.exp() * pooled @ F.normalize(self.weight, dim=1).T  # (n, n_way)

    def fit(self, support: Tensor, support_labels: Tensor) -> "ImageFinetune":
        """Fine-tune on (n_support, c, h, w) last-block inputs with (n_support,) labels in 0..n_way-1."""
        if support.ndim != 4:
            raise UserInputError(
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
                if self.progress is not None:
                    self.progress(len(self.losses) / settings.steps, f"fine-tuning step {len(self.losses)}/{settings.steps}")
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

    def state_dict(self) -> dict[str, Tensor]:
        """The tuned last stage (``tail.*``), the head's class directions and its log scale."""
        if self.tail is None or self.weight is None or self.log_scale is None:
            raise RuntimeError("fit the learner before saving it")
        state = {f"tail.{name}": value for name, value in self.tail.state_dict().items()}
        return {**state, "weight": self.weight, "log_scale": self.log_scale}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        device = next(self.backbone_model.parameters()).device
        tail = last_stage(self.backbone_model).to(device).eval()
        tail.load_state_dict({name[len("tail.") :]: value for name, value in state.items() if name.startswith("tail.")})
        self.tail = tail.requires_grad_(False)
        self.weight, self.log_scale = state["weight"].float().to(device), state["log_scale"].float().to(device)
        self.n_way = self.weight.shape[0]


def make_image_finetune(backbone_id: str, device: torch.device, config: ImageFinetuneConfig | None = None) -> ImageFinetune:
    """Build an ``ImageFinetune`` on the shared backbone ``backbone_id``.

    Raises:
        InputKindUnsupportedError: for a backbone without an EfficientNet-style last stage (``pixels28``
            has nothing pretrained to fine-tune).
    """
    if LAST_BLOCK_INPUT not in BACKBONES[backbone_id].input_kinds:
        raise InputKindUnsupportedError(
            f"finetune adapts the last stage of a pretrained EfficientNet-style backbone; {backbone_id!r} has none. "
            "Use efficientnet_lite0, or maml / maml_scratch for networks trained on raw pixels"
        )
    backbone = load_backbone(backbone_id, device)
    return ImageFinetune(backbone.model, config)
