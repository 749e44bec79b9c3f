"""The one contract every few-shot learner follows.

A learner is fitted on a support set, then scores a query set:

    learner.fit(support, support_labels)       # support: (n_support, *input_shape)
    probabilities = learner.predict_proba(query)  # (n_query, n_way), rows sum to 1

Inputs are whatever the learner consumes, named by its ``input_kind``: "features" are what the
backbone or encoder outputs (pooled features (n, d) for a pretrained backbone, the (n, 1, 28, 28)
pixels for the ``pixels28`` backbone that the Conv-4 network reads); other kinds (token ids for a
text fine-tune, ...) are prepared by the encoder's ``prepare(kind, raw_items)``.
Labels are always remapped to 0..n_way-1 before they reach a learner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from fewshot_demo.config.errors import UserInputError


def check_support(support: Tensor, support_labels: Tensor) -> int:
    """Validate a support set and return its number of classes.

    Raises:
        UserInputError: if shapes disagree or the labels are not exactly 0..n_way-1.
    """
    if support.shape[0] == 0:
        raise UserInputError("the support set is empty; add at least one example per class")
    if support_labels.ndim != 1 or support_labels.shape[0] != support.shape[0]:
        raise UserInputError(
            f"expected one label per support item, got {tuple(support_labels.shape)} labels "
            f"for {support.shape[0]} items"
        )
    present = torch.unique(support_labels).tolist()
    n_way = len(present)
    if present != list(range(n_way)):
        raise UserInputError(f"support labels must be 0..n_way-1 with every class present, got {present}")
    if n_way < 2:
        raise UserInputError("few-shot classification needs at least 2 classes; add another class")
    return n_way


class FewShotLearner(ABC):
    """Base class: fit on a support set, then return (n_query, n_way) probabilities.

    Subclasses implement ``fit`` and ``predict_proba``. Learners that can be saved implement
    ``state_dict`` and ``load_state_dict`` with plain tensors, so they can be written as
    safetensors. What a learner is called, whether it can be saved and what it consumes are said
    once, by its ``MethodSpec`` (``key``, ``savable``, ``input_kind(modality)``).
    """

    def __init__(self) -> None:
        self.n_way: int = 0

    @abstractmethod
    def fit(self, support: Tensor, support_labels: Tensor) -> "FewShotLearner":
        """Fit on a support set.

        Args:
            support: (n_support, *input_shape) inputs.
            support_labels: (n_support,) int64 labels in 0..n_way-1.

        Returns:
            self, so calls can be chained.
        """

    @abstractmethod
    def predict_proba(self, query: Tensor) -> Tensor:
        """Score a query set.

        Args:
            query: (n_query, *input_shape) inputs.

        Returns:
            (n_query, n_way) class probabilities.
        """

    def predict(self, query: Tensor) -> Tensor:
        """Return the (n_query,) predicted labels."""
        return self.predict_proba(query).argmax(dim=1)

    def _require_fitted(self) -> None:
        if self.n_way == 0:
            raise RuntimeError(f"{type(self).__name__}.fit must be called before predicting")

    # Saving: plain tensors plus a JSON-able config.
    def state_dict(self) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded")

    def config(self) -> dict[str, Any]:
        """JSON-able settings needed to rebuild this learner."""
        return {}
