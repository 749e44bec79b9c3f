"""The settings of one meta-training or self-supervised pretraining run."""

from __future__ import annotations

from dataclasses import dataclass

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data.splits import (
    TRACKS,
)
from fewshot_demo.data.views import ViewConfig
from fewshot_demo.methods.registry import recipe_of


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one meta-training run.

    Attributes:
        method: a meta-trained method (``checkpoints.meta_trained_methods()``).
        backbone: ``efficientnet_lite0`` (projection over features) or ``pixels28`` (Conv-4).
        n_way: classes per training task.
        n_shots: shots per training task, drawn uniformly from this tuple for each task (one
            checkpoint then serves 1-shot and 5-shot users).
        n_query: queries per class in training tasks.
        meta_batch: tasks per outer step.
        iterations: outer steps.
        meta_lr: Adam step size of the outer loop for the network (for Reptile: the initial outer
            step size epsilon, annealed linearly to zero, with plain SGD as in the paper).
        step_size_meta_lr: Adam step size for scalars: the method's own tensors (MAML's learned
            inner step sizes, Matching Networks' temperature) and the projection's output scale.
        inner_steps, inner_lr, learn_inner_lr: MAML-family inner loop (see ``MAMLConfig``).
        rank: rank of the projection's residual map (feature track); hidden: Conv-4 channels (pixel track).
        stamp_classes: pixel track: the Tux Paint stamp folders join the base classes as silhouettes
            (see ``stamp_base_folders``).
        symmetric_classes: pixel track: every base class also enters training rotated and mirrored,
            as 8 classes (see ``symmetric_classes``).
        max_shift: pixel track: training images move by up to this many pixels (see ``random_shift``).
        fashion_tasks: pixel track: the fraction of training tasks that draw all their classes from
            the Fashion-MNIST base classes (and their symmetries). Tasks drawn from all base classes
            are mostly stamp silhouettes (464 of the 584 classes with symmetries); these practise
            telling garments apart, as the held-out tasks require.
        weight_average: when above 0, validate and keep an exponential moving average of the
            meta-parameters with this decay instead of the raw iterate (Polyak averaging).
        val_every, val_episodes: validation schedule (5-shot and 1-shot episodes, half each).
        seed: seeds initialisation, task sampling and validation episodes.
        images: self-supervised methods: a folder of images to pretrain on instead of the base
            classes' images (e.g. a data set exported from the Hugging Face Hub); None: the base images.
        batch_size: self-supervised methods: unlabelled images per step (over all processes).
        temperature: SimCLR: the NT-Xent temperature.
        mask_ratio, patch_size: masked autoencoder: share of the patch_size x patch_size patches hidden.
        norm_pix: masked autoencoder: reconstruct each hidden patch normalised by its own mean and
            spread instead of its raw pixels.
        min_area, flip, contrast, noise: self-supervised methods: how the random views of an image
            differ (``data.views.ViewConfig``); ``max_shift`` does not apply to them (crops shift).

    Meta-learners read ``n_way``, ``n_shots`` and ``n_query`` for their training tasks; the
    self-supervised methods never see a task (nor a label) in training, and ``n_way`` and ``n_shots``
    only shape their validation episodes.
    """

    method: str = "maml"
    backbone: str = "efficientnet_lite0"
    n_way: int = 5
    n_shots: tuple[int, ...] = (1, 5)
    n_query: int = 10
    meta_batch: int = 4
    iterations: int = 1000
    meta_lr: float = 1e-3
    step_size_meta_lr: float = 1e-2
    inner_steps: int = 5
    inner_lr: float = 0.5
    learn_inner_lr: bool = True
    rank: int = 32
    hidden: int = 32
    stamp_classes: bool = False
    symmetric_classes: bool = False
    max_shift: int = 0
    fashion_tasks: float = 0.0
    weight_average: float = 0.0
    val_every: int = 100
    val_episodes: int = 100
    seed: int = 0
    images: str | None = None
    batch_size: int = 256
    temperature: float = 0.5
    mask_ratio: float = 0.75
    patch_size: int = 4
    norm_pix: bool = False
    min_area: float = 0.5
    flip: bool = False
    contrast: float = 0.4
    noise: float = 0.1

    def __post_init__(self) -> None:
        recipe = recipe_of(self.method)  # a method without a training recipe is refused here
        if recipe.outer_update == "batch":
            if self.backbone != "pixels28":
                raise UserInputError(f"{self.method} pretrains the Conv-4 on unlabelled images: use --backbone pixels28")
            if self.batch_size < 2:
                raise UserInputError(f"--batch-size must be at least 2 images, got {self.batch_size}")
            if self.temperature <= 0:
                raise UserInputError(f"--temperature must be positive, got {self.temperature}")
            if not 0 < self.mask_ratio < 1:
                raise UserInputError(f"--mask-ratio is a fraction in (0, 1), got {self.mask_ratio}")
            if self.patch_size < 1 or 28 % self.patch_size:
                raise UserInputError(f"--patch-size must divide 28 (1, 2, 4, 7, 14), got {self.patch_size}")
            self.view_config()  # checks the view settings
        elif self.images is not None:
            raise UserInputError(f"--images is for the self-supervised methods; {self.method} learns from labelled tasks")
        if self.backbone not in TRACKS:
            raise UserInputError(f"meta-training needs --backbone {' or '.join(TRACKS)}, got {self.backbone!r}")
        if self.n_way < 2 or min(self.n_shots) < 1 or self.n_query < 1:
            raise UserInputError("n_way must be at least 2, n_shot and n_query at least 1")
        if (self.stamp_classes or self.symmetric_classes or self.max_shift or self.fashion_tasks) and self.backbone != "pixels28":
            raise UserInputError(
                "--stamp-classes, --symmetric-classes, --max-shift and --fashion-tasks concern images: use them with --backbone pixels28"
            )
        if not 0.0 <= self.fashion_tasks <= 1.0:
            raise UserInputError(f"--fashion-tasks is a fraction in [0, 1], got {self.fashion_tasks}")
        if not 0.0 <= self.weight_average < 1.0:
            raise UserInputError(f"--weight-average is a decay in [0, 1), got {self.weight_average}")
        if self.max_shift < 0:
            raise UserInputError(f"--max-shift must be 0 or more pixels, got {self.max_shift}")

    def view_config(self) -> ViewConfig:
        """The random views of the self-supervised methods."""
        return ViewConfig(min_area=self.min_area, flip=self.flip, contrast=self.contrast, noise=self.noise)
