"""Linear probe: multinomial logistic regression on frozen features (the transfer baseline)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.features import (
    FeatureNormalizer,
    NormalizationConfig,
    class_means,
)
from fewshot_demo.methods.networks import one_thread


class LinearProbe(FewShotLearner):
    """Logistic regression on frozen, normalised features.

    The transfer-learning baseline of "A Closer Look at Few-shot Classification" (Chen et al.,
    ICLR 2019) and "Rethinking Few-Shot Image Classification" (Tian et al., ECCV 2020). Trained
    full-batch with L-BFGS from a prototype initialisation, with an L2 penalty as in scikit-learn's
    ``LogisticRegression`` (loss = C * sum of cross-entropies + ||W||^2 / 2).

    Args:
        normalization: how features are normalised; see ``NormalizationConfig``.
        inverse_regularization: C, the inverse L2 strength; larger fits the support more tightly.
        max_iter: L-BFGS iterations.
    """

    def __init__(
        self,
        normalization: NormalizationConfig | None = None,
        inverse_regularization: float = 10.0,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        self.normalizer = FeatureNormalizer(normalization)
        self.inverse_regularization = inverse_regularization
        self.max_iter = max_iter
        self.weight: Tensor | None = None  # (n_way, d)
        self.bias: Tensor | None = None  # (n_way,)

    def fit(self, support: Tensor, support_labels: Tensor) -> "LinearProbe":
        self.n_way = check_support(support, support_labels)
        self.normalizer.fit(support)
        with torch.no_grad():
            features = self.normalizer(support)  # (n_support, d)
        # L-BFGS on a (25, 1280) problem is many tiny ops: one thread avoids waiting on a busy core.
        with torch.enable_grad(), one_thread(support.device.type == "cpu"):
            weight = (10.0 * class_means(features, support_labels, self.n_way)).requires_grad_()
            bias = torch.zeros(self.n_way, device=features.device, requires_grad=True)
            optimizer = torch.optim.LBFGS(
                [weight, bias], lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe"
            )

            def closure() -> Tensor:
                optimizer.zero_grad()
                logits = features @ weight.T + bias  # (n_support, n_way)
                loss = self.inverse_regularization * F.cross_entropy(
                    logits, support_labels, reduction="sum"
                ) + 0.5 * weight.pow(2).sum()
                loss.backward()
                return loss

            optimizer.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()
        return self

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        self._require_fitted()
        logits = self.normalizer(query) @ self.weight.T + self.bias  # (n_query, n_way)
        return torch.softmax(logits, dim=1)

    def state_dict(self) -> dict[str, Tensor]:
        assert self.weight is not None and self.bias is not None
        return {
            "weight": self.weight,
            "bias": self.bias,
            **{f"normalizer.{k}": v for k, v in self.normalizer.state_dict().items()},
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.weight, self.bias = state["weight"].float(), state["bias"].float()
        self.normalizer.load_state_dict(
            {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("normalizer.")}
        )
        self.n_way = self.weight.shape[0]

    def config(self) -> dict[str, Any]:
        return {
            "normalization": self.normalizer.config.to_dict(),
            "inverse_regularization": self.inverse_regularization,
            "max_iter": self.max_iter,
        }
