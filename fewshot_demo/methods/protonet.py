"""Prototypical Networks on frozen features."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.features import (
    FeatureNormalizer,
    NormalizationConfig,
    class_means,
)


class PrototypicalNetwork(FewShotLearner):
    """Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017).

    Each class is the mean of its normalised support features (its prototype); a query's logits are
    its negative squared Euclidean distances to the prototypes, scaled by ``temperature``. On
    L2-normalised features this ranks exactly like cosine similarity (SimpleShot, Wang et al. 2019).

    Args:
        normalization: how features are normalised; see ``NormalizationConfig``.
        temperature: multiplies the negative squared distances before the softmax. Only the
            confidence of the probabilities depends on it, never the predicted class. 8 gave the
            best-calibrated probabilities over 1- and 5-shot Tux Paint episodes with Lite0
            features (expected calibration error 0.082 and 0.055; 10 gave 0.12 at 1-shot).
    """

    def __init__(
        self, normalization: NormalizationConfig | None = None, temperature: float = 8.0
    ) -> None:
        super().__init__()
        self.normalizer = FeatureNormalizer(normalization)
        self.temperature = temperature
        self.prototypes: Tensor | None = None  # (n_way, d)

    @torch.no_grad()
    def fit(self, support: Tensor, support_labels: Tensor) -> "PrototypicalNetwork":
        self.n_way = check_support(support, support_labels)
        self.normalizer.fit(support)
        self.prototypes = class_means(self.normalizer(support), support_labels, self.n_way)
        return self

    @torch.no_grad()
    def distances(self, query: Tensor) -> Tensor:
        """Return (n_query, n_way) squared Euclidean distances to the prototypes."""
        self._require_fitted()
        return torch.cdist(self.normalizer(query), self.prototypes).pow(2)

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        return torch.softmax(-self.temperature * self.distances(query), dim=1)  # (n_query, n_way)

    def state_dict(self) -> dict[str, Tensor]:
        assert self.prototypes is not None
        return {
            "prototypes": self.prototypes,
            **{f"normalizer.{k}": v for k, v in self.normalizer.state_dict().items()},
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.prototypes = state["prototypes"].float()
        self.normalizer.load_state_dict(
            {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("normalizer.")}
        )
        self.n_way = self.prototypes.shape[0]

    def config(self) -> dict[str, Any]:
        return {"normalization": self.normalizer.config.to_dict(), "temperature": self.temperature}
