"""Baseline++: a cosine-similarity classifier with a learned scale, trained on the support set."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.options import bounded
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.features import (
    FeatureNormalizer,
    NormalizationConfig,
    class_means,
)
from fewshot_demo.methods.networks import one_thread


@dataclass(frozen=True)
class BaselinePPConfig:
    """Settings of the Baseline++ head.

    Attributes:
        steps: full-batch Adam steps on the support set.
        learning_rate: Adam step size for the class weights.
        initial_scale: starting value of the learned scale (the softmax temperature); Chen et al.
            fix it at 2 for small problems and 10 for large ones, here it is learned from this start.
        weight_decay: L2 penalty on the class weights (keeps them near their prototype initialisation).
    """

    steps: int = bounded(50, 1, 1000)
    learning_rate: float = bounded(0.02, 1e-6, 10.0)
    initial_scale: float = bounded(10.0, 1e-3, 1000.0)
    weight_decay: float = bounded(0.0, 0.0, 10.0)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UserInputError(f"Baseline++ needs at least one training step, got steps={self.steps}")
        if self.learning_rate <= 0 or self.initial_scale <= 0:
            raise UserInputError("learning_rate and initial_scale must be positive")


class BaselinePlusPlus(FewShotLearner):
    """Baseline++ ("A Closer Look at Few-shot Classification", Chen et al., ICLR 2019).

    A classifier whose logits are ``scale * cos(feature, w_c)``: each class is a weight vector and
    only its direction matters, which reduces intra-class variation. In the paper the backbone is
    pre-trained with this head on base classes and a new head is trained on the novel support set;
    here the backbone is the frozen pretrained one and the new head is trained on the support set
    with Adam, starting from the class prototypes (so step 0 is a cosine-prototype classifier).
    The scale is learned (as a log, so it stays positive).

    Args:
        config: training settings; see ``BaselinePPConfig``.
        normalization: how the frozen features are normalised first; see ``NormalizationConfig``.
    """

    def __init__(self, config: BaselinePPConfig | None = None, normalization: NormalizationConfig | None = None) -> None:
        super().__init__()
        self.settings = config or BaselinePPConfig()
        self.normalizer = FeatureNormalizer(normalization)
        self.weight: Tensor | None = None  # (n_way, d)
        self.log_scale: Tensor | None = None  # ()
        self.losses: list[float] = []

    def fit(self, support: Tensor, support_labels: Tensor) -> "BaselinePlusPlus":
        """Train the cosine head on (n_support, d) features with (n_support,) labels in 0..n_way-1."""
        if support.ndim != 2:
            raise UserInputError(
                f"Baseline++ works on (n, d) feature vectors, got shape {tuple(support.shape)}; "
                "use a pretrained backbone or encoder, not raw pixels"
            )
        self.n_way = check_support(support, support_labels)
        with one_thread(support.device.type == "cpu"):  # 50 tiny steps: a second thread only waits
            return self._fit(support, support_labels)

    def _fit(self, support: Tensor, support_labels: Tensor) -> "BaselinePlusPlus":
        self.normalizer.fit(support)
        with torch.no_grad():
            features = self.normalizer(support)  # (n_support, d)
        with torch.enable_grad():
            weight = class_means(features, support_labels, self.n_way).clone().requires_grad_()
            log_scale = torch.tensor(float(self.settings.initial_scale), device=features.device).log().requires_grad_()
            optimizer = torch.optim.Adam(
                [weight, log_scale], lr=self.settings.learning_rate, weight_decay=self.settings.weight_decay
            )
            self.losses = []
            for _ in range(self.settings.steps):
                logits = log_scale.exp() * F.normalize(features, dim=1) @ F.normalize(weight, dim=1).T  # (n_support, n_way)
                loss = F.cross_entropy(logits, support_labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                self.losses.append(float(loss.detach()))
        self.weight, self.log_scale = weight.detach(), log_scale.detach()
        return self

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        """Return (n_query, n_way) softmax probabilities of the scaled cosine logits."""
        self._require_fitted()
        features = F.normalize(self.normalizer(query), dim=1)  # (n_query, d)
        logits = self.log_scale.exp() * features @ F.normalize(self.weight, dim=1).T  # (n_query, n_way)
        return torch.softmax(logits, dim=1)

    def state_dict(self) -> dict[str, Tensor]:
        assert self.weight is not None and self.log_scale is not None
        return {
            "weight": self.weight,
            "log_scale": self.log_scale,
            **{f"normalizer.{k}": v for k, v in self.normalizer.state_dict().items()},
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.weight, self.log_scale = state["weight"].float(), state["log_scale"].float()
        self.normalizer.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("normalizer.")})
        self.n_way = self.weight.shape[0]

    def config(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings), "normalization": self.normalizer.config.to_dict()}
