"""The training side of a meta-learned method, kept next to its algorithm.

``fewshot_demo.train`` runs one generic episodic loop and ``fewshot_demo.checkpoints`` one generic
save/load; what differs between MAML, Reptile, Matching Networks and ProtoNet is asked of the
method's ``MetaRecipe`` (found through its ``MethodSpec.recipe``): which extra tensors it
meta-learns, its loss on one task, the learner users run, and what its checkpoint records.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.networks import EmbeddingNetwork


class TrainSettings(Protocol):
    """What a recipe reads from a training run's settings (``train.TrainConfig`` has these)."""

    inner_steps: int
    inner_lr: float
    learn_inner_lr: bool


class MetaRecipe:
    """Base class: the parts of meta-training that depend on the method.

    Subclasses set ``key`` and override ``task_loss`` (gradient-based outer loop) or set
    ``outer_update = "delta"`` and override ``task_delta`` (Reptile's outer step), plus ``learner``.
    """

    key: str = ""
    #: "loss": the loop back-propagates ``task_loss``; "delta": it moves the weights by ``task_delta``.
    outer_update: str = "loss"

    def init_extras(self, network: EmbeddingNetwork, settings: TrainSettings) -> dict[str, Tensor]:
        """Tensors meta-learned beside the network (on the network's device), e.g. step sizes."""
        return {}

    def task_loss(
        self, network: EmbeddingNetwork, extras: dict[str, Tensor], settings: TrainSettings,
        support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """(loss, detached accuracy) on one task's queries; inputs already normalised."""
        raise NotImplementedError(f"{self.key} has no task loss")

    def task_delta(
        self, network: EmbeddingNetwork, extras: dict[str, Tensor], settings: TrainSettings,
        inputs: Tensor, labels: Tensor,
    ) -> dict[str, Tensor]:
        """{``network.<name>``: phi - theta} after adapting on one task's items."""
        raise NotImplementedError(f"{self.key} has no task delta")

    def learner(self, network: EmbeddingNetwork, extras: dict[str, Tensor], settings: TrainSettings,
                options: Any = None) -> FewShotLearner:
        """The learner users run, on these meta-parameters (validation uses the same code)."""
        raise NotImplementedError

    def checkpoint_fields(self, settings: TrainSettings) -> dict[str, Any]:
        """More JSON fields for the checkpoint's config (read back by ``settings_from``)."""
        return {}

    def settings_from(self, checkpoint_config: dict[str, Any]) -> TrainSettings | None:
        """The settings a checkpoint was trained with, as far as ``learner`` needs them."""
        return None

    def extra_shapes(self, checkpoint_config: dict[str, Any], network: EmbeddingNetwork) -> dict[str, tuple[int, ...]]:
        """{name: shape} of the extra tensors a checkpoint of this method must hold."""
        return {}
