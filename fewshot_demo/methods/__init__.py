"""The learner registry: every method behind one name and one contract.

``make_learner(name, context)`` builds a fresh, unfitted learner. The context says which backbone
produced the features and on which device, so meta-trained learners can find their checkpoint.
New methods register themselves with ``register``; the bench command, the UI and the comparison tab
only ever loop over names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.protonet import PrototypicalNetwork


@dataclass(frozen=True)
class LearnerContext:
    """Where a learner will run.

    Attributes:
        backbone_id: registry id of the backbone or encoder that produced the features.
        feature_dim: size of one feature vector.
        device: where tensors live.
    """

    backbone_id: str = ""
    feature_dim: int = 0
    device: torch.device = torch.device("cpu")


LearnerFactory = Callable[[LearnerContext], FewShotLearner]
_REGISTRY: dict[str, tuple[LearnerFactory, str]] = {}


def register(name: str, factory: LearnerFactory, description: str) -> None:
    """Make a learner available under ``name``."""
    _REGISTRY[name] = (factory, description)


def available_methods() -> dict[str, str]:
    """Return {method name: one-line description}."""
    return {name: description for name, (_, description) in _REGISTRY.items()}


def make_learner(name: str, context: LearnerContext | None = None) -> FewShotLearner:
    """Build a fresh learner by method name.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name][0](context or LearnerContext())


register("protonet", lambda context: PrototypicalNetwork(), "Prototypical Networks (Snell et al. 2017)")
register("linear", lambda context: LinearProbe(), "Linear probe: logistic regression on frozen features")

__all__ = [
    "FewShotLearner",
    "LearnerContext",
    "LinearProbe",
    "PrototypicalNetwork",
    "available_methods",
    "check_support",
    "make_learner",
    "register",
]
