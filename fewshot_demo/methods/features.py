"""Feature normalisation shared by the learners that work on frozen backbone features.

The cheap, well-documented wins on pretrained features (all inductive: they use the support set only):
- a power transform x -> x ** beta on non-negative features (Hu et al. 2021, "Leveraging the Feature
  Distribution in Transfer-based Few-Shot Learning") makes class clusters more Gaussian;
- L2 normalisation, then centering on a mean, then L2 again ("CL2N" in Wang et al. 2019, SimpleShot).
SimpleShot centres on the mean of base-class features; a user's task has no base classes, so we centre
on the support set's mean, which removes the direction all the user's classes share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class NormalizationConfig:
    """How frozen features are normalised before a learner sees them.

    Attributes:
        power: exponent of the power transform, or None to skip it. Applied only when every
            feature is non-negative (pooled post-ReLU features); signed features skip it.
        center: subtract the support mean (after a first L2 normalisation).
        l2: L2-normalise the final features.
    """

    power: float | None = 0.5
    center: bool = True
    l2: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class FeatureNormalizer:
    """Power transform, L2, centring on the support mean, L2 again.

    ``fit`` remembers the centre from the support set; ``__call__`` applies the same transform to
    any features (support or query), so a query is normalised exactly like the support.
    """

    def __init__(self, config: NormalizationConfig | None = None) -> None:
        self.config = config or NormalizationConfig()
        self.center: Tensor | None = None
        self.apply_power: bool = False

    def _pre_center(self, features: Tensor) -> Tensor:
        features = features.float()
        if self.apply_power and self.config.power is not None:
            features = features.clamp_min(0).pow(self.config.power)
        if self.config.l2 or self.config.center:
            features = F.normalize(features, dim=-1)
        return features

    def fit(self, support: Tensor) -> "FeatureNormalizer":
        """Learn the centre from (n_support, d) support features."""
        self.apply_power = self.config.power is not None and bool((support >= 0).all())
        pre = self._pre_center(support)
        self.center = pre.mean(dim=0) if self.config.center else torch.zeros_like(pre[0])
        return self

    def __call__(self, features: Tensor) -> Tensor:
        """Normalise (n, d) features with the fitted centre."""
        if self.center is None:
            raise RuntimeError("FeatureNormalizer.fit must be called first")
        features = self._pre_center(features) - self.center.to(features.device)
        return F.normalize(features, dim=-1) if self.config.l2 else features

    def state_dict(self) -> dict[str, Tensor]:
        assert self.center is not None
        return {"center": self.center, "apply_power": torch.tensor(self.apply_power)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.center = state["center"].float()
        self.apply_power = bool(state["apply_power"].item())


def class_means(features: Tensor, labels: Tensor, n_way: int) -> Tensor:
    """Return the (n_way, d) mean feature of each class (labels in 0..n_way-1)."""
    sums = torch.zeros(n_way, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=n_way).clamp_min(1).to(features.dtype)
    return sums / counts[:, None]
