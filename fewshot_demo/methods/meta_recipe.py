"""The training side of a trained method, kept next to its algorithm.

``fewshot_demo.train`` runs one generic loop and ``fewshot_demo.methods.checkpoint_store`` one generic
save/load; what differs between MAML, Reptile, Matching Networks, ProtoNet and the self-supervised
methods (SimCLR, masked autoencoder) is asked of the method's ``MetaRecipe`` (found through its
``MethodSpec.recipe``): which extra tensors it learns, its loss on one task (or on one batch of
unlabelled images), the learner users run, and what its checkpoint records.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from torch import Tensor, nn

from fewshot_demo.data.views import ViewConfig
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.methods.networks import EmbeddingNetwork
from fewshot_demo.runtime.distributed import World


class TrainSettings(Protocol):
    """What a recipe reads from a training run's settings (``train.TrainConfig`` has these)."""

    inner_steps: int
    inner_lr: float
    learn_inner_lr: bool
    temperature: float
    mask_ratio: float
    patch_size: int
    norm_pix: bool

    def view_config(self) -> "ViewConfig": ...


class MetaRecipe:
    """Base class: the parts of meta-training that depend on the method.

    Subclasses set ``key`` and override ``task_loss`` (gradient-based outer loop), or set
    ``outer_update = "delta"`` and override ``task_delta`` (Reptile's outer step), or set
    ``outer_update = "batch"`` and override ``batch_loss`` (self-supervised pretraining on batches of
    unlabelled images), plus ``learner``.
    """

    key: str = ""
    #: "loss": the loop back-propagates ``task_loss`` over labelled tasks; "delta": it moves the
    #: weights by ``task_delta``; "batch": it back-propagates ``batch_loss`` over unlabelled images.
    outer_update: str = "loss"
    #: What the second number ``batch_loss`` returns is, for the progress bar.
    metric_name: str = "acc"

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

    def init_heads(self, network: EmbeddingNetwork, settings: TrainSettings) -> nn.Module | None:
        """Modules trained beside the network and dropped afterwards (a projection head, a decoder):
        they are optimised with the network but never written to the checkpoint."""
        return None

    def batch_loss(
        self, network: EmbeddingNetwork, heads: nn.Module | None, settings: TrainSettings,
        images: Tensor, generator: np.random.Generator, world: "World",
    ) -> tuple[Tensor, Tensor]:
        """(loss, detached metric) of this process's share of one batch of unlabelled images.

        Args:
            images: (batch, *input_shape) the whole batch, drawn the same in every process; no labels.
            generator: the run's generator; draw the random parts of the loss (views, masks) for the
                whole batch from it, so that every process draws the same.
            world: the processes sharing the batch; compute ``world.share(len(images))`` only, and
                divide by ``len(images)`` so that the losses summed over processes are the mean.
        """
        raise NotImplementedError(f"{self.key} has no batch loss")

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
