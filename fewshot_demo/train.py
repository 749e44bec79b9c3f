"""Episodic meta-training and self-supervised pretraining: ``python -m fewshot_demo.train``.

Two tracks, each meta-trained on base classes disjoint from its validation and evaluation classes:

- ``--backbone efficientnet_lite0``: a projection over the bundled backbone's frozen 1280-d features,
  meta-trained on Tux Paint stamp folders other than the 9 evaluation folders (and their
  sub-folders), validated on further held-out folders. Features are computed once and cached.
- ``--backbone pixels28``: Conv-4 from scratch on 28x28 grayscale images, meta-trained on
  Fashion-MNIST classes 0-4 plus the ten MNIST digits, validated on Fashion-MNIST classes 5-9
  (training images) and evaluated on those held-out classes' test images. (Meta-training on
  Fashion-MNIST alone leaves too few base classes: the held-out gain was about half as large.)

The self-supervised methods (``--method simclr`` or ``mae``) pretrain the Conv-4 of the pixels28
track on the same base images without ever reading their labels (or on ``--images FOLDER``), and
are validated like the meta-learners. Under ``torchrun`` every command runs on several processes
(see ``fewshot_demo.distributed``).

Examples::

    python -m fewshot_demo.train --method maml --backbone efficientnet_lite0
    python -m fewshot_demo.train --method simclr --backbone pixels28 --temperature 0.2 --iterations 1000
    torchrun --standalone --nproc_per_node 4 -m fewshot_demo.train --method simclr --backbone pixels28 --device cuda
    python -m fewshot_demo.train --method protonet --backbone pixels28 --iterations 1500
    python -m fewshot_demo.train --method maml --backbone pixels28 --dry-run
    python -m fewshot_demo.train evaluate --backbone pixels28 --methods maml maml_scratch --n-shot 1 5
    python -m fewshot_demo.train push fewshot_demo/checkpoints/maml-pixels28 --repo-id you/maml-pixels28
    python -m fewshot_demo.train pull --repo-id you/maml-pixels28

The loop (sampling, outer optimiser, validation, checkpointing, splitting steps over processes)
lives here; each method file holds only its algorithm (MAML's inner loop and outer loss, Reptile's
task update, SimCLR's and the masked autoencoder's batch losses, the classifiers).
Validation and ``evaluate`` draw their episodes with ``episodes.sample_episodes`` and run them in
``fewshot_demo.runner``, as the bench and the comparison do; ``sample_task`` draws training tasks only.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_demo.checkpoints import SHIPPED_DIR, checkpoint_name, meta_trained_methods, recipe_of, save_checkpoint
from fewshot_demo.data.views import ViewConfig
from fewshot_demo.device import pick_device
from fewshot_demo.distributed import World, join_from_environment
from fewshot_demo.episodes import EpisodeConfig, choose_n_query, sample_episodes
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.networks import Conv4, EmbeddingNetwork, FeatureProjection, prepare_episode
from fewshot_demo.runner import run_episodes
from fewshot_demo.settings import settings

#: The image track's evaluation classes; never used in meta-training (nor their sub-folders).
TUXPAINT_EVAL_FOLDERS = (
    "animals/birds",
    "food/fruit",
    "plants/flowers",
    "town/roadsigns",
    "food/vegetables",
    "animals/mammals/bovines",
    "household/tools",
    "animals/mammals",
    "animals/fish",
)
#: Base folders held out from meta-training for validation (disjoint from training and evaluation).
TUXPAINT_VAL_FOLDERS = (
    "animals/insects",
    "plants/trees",
    "seasonal/halloween",
    "space/planets",
    "symbols/chess",
    "clothes/hats",
    "town/flags",
    "sports",
)
TUXPAINT_MIN_IMAGES = 4
#: Conv-4 track: base classes (Fashion-MNIST t-shirt, trouser, pullover, dress, coat, and all MNIST
#: digits) and held-out classes (sandal, shirt, sneaker, bag, ankle boot) for validation and evaluation.
FASHION_TRAIN_CLASSES = (0, 1, 2, 3, 4)
MNIST_TRAIN_CLASSES = tuple(range(10))
FASHION_HELD_OUT_CLASSES = (5, 6, 7, 8, 9)
FASHION_SOURCE = "fashion-mnist"  # prefix of the Fashion-MNIST class names in the pools
#: Stamp folders never used as Conv-4 base classes: garments, which would show the held-out classes'
#: kind of object (the stamps have shirts and socks) to the network before evaluation.
STAMP_EXCLUDED_FOLDERS = ("clothes",)
TRACKS = ("efficientnet_lite0", "pixels28")


# --------------------------------------------------------------------------------------------- data
@dataclass
class TaskPool:
    """Labelled items to draw episodes from.

    Attributes:
        items: (n, *input_shape) features or pixels.
        labels: (n,) int64 class ids in 0..n_classes-1.
        class_names: name of each class id.
    """

    items: Tensor
    labels: Tensor
    class_names: list[str]

    def to(self, device: torch.device) -> "TaskPool":
        return TaskPool(self.items.to(device), self.labels.to(device), self.class_names)

    def classes_starting_with(self, prefix: str) -> "TaskPool":
        """The pool of the classes whose name starts with ``prefix``, relabelled 0..k-1."""
        kept = [i for i, name in enumerate(self.class_names) if name.startswith(prefix)]
        relabel = torch.full((len(self.class_names),), -1, dtype=torch.long, device=self.labels.device)
        relabel[kept] = torch.arange(len(kept), device=self.labels.device)
        new_labels = relabel[self.labels]
        members = new_labels >= 0
        return TaskPool(self.items[members], new_labels[members], [self.class_names[i] for i in kept])


def sample_task(
    pool: TaskPool, n_way: int, n_shot: int, n_query: int, generator: np.random.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Draw one N-way K-shot *training* task; classes with few items give fewer queries (at least one).

    Only for meta-training tasks: the loop augments them (``random_shift``) and wants every base class
    in play however few items it has. Validation and ``train evaluate`` draw their episodes with
    ``episodes.sample_episodes`` and run them in ``fewshot_demo.runner``, as the bench and the
    comparison do.

    Returns:
        (support, support_labels, query, query_labels) with labels in 0..n_way-1; support is
        (n_way * n_shot, *input_shape), query has up to n_way * n_query items.
    """
    labels = pool.labels.cpu().numpy()
    counts = np.bincount(labels, minlength=len(pool.class_names))
    eligible = np.flatnonzero(counts >= n_shot + 1)
    if len(eligible) < n_way:
        raise ValueError(
            f"{n_way}-way {n_shot}-shot tasks need {n_way} classes with at least {n_shot + 1} items; "
            f"only {len(eligible)} have them. Lower --n-way or --n-shot."
        )
    support_index, support_labels, query_index, query_labels = [], [], [], []
    for episode_label, class_id in enumerate(generator.choice(eligible, size=n_way, replace=False)):
        members = generator.permutation(np.flatnonzero(labels == class_id))
        take_query = min(n_query, len(members) - n_shot)
        support_index += members[:n_shot].tolist()
        query_index += members[n_shot : n_shot + take_query].tolist()
        support_labels += [episode_label] * n_shot
        query_labels += [episode_label] * take_query
    device = pool.items.device
    return (
        pool.items[torch.tensor(support_index, device=device)],
        torch.tensor(support_labels, device=device),
        pool.items[torch.tensor(query_index, device=device)],
        torch.tensor(query_labels, device=device),
    )


def symmetric_classes(pool: TaskPool) -> TaskPool:
    """Return a pool with 8 classes per class: the images under each symmetry of the square.

    A trouser turned on its side or a mirrored 7 is not a trouser or a 7 any more, so each rotation
    (0, 90, 180, 270 degrees) and its mirror image is a class of its own, as Santoro et al. (2016)
    and later few-shot work do with Omniglot characters. Fifteen base classes become 120: enough
    for 20-way training tasks that differ from one another.
    """
    n_classes = len(pool.class_names)
    items, labels, names = [], [], []
    for k in range(8):
        turned = torch.rot90(pool.items, k % 4, dims=(-2, -1))
        items.append(turned.flip(-1) if k >= 4 else turned)
        labels.append(pool.labels + k * n_classes)
        names += [f"{name} (rot {90 * (k % 4)}{', mirrored' if k >= 4 else ''})" for name in pool.class_names]
    return TaskPool(torch.cat(items).contiguous(), torch.cat(labels), names)


def random_shift(images: Tensor, max_shift: int, generator: np.random.Generator) -> Tensor:
    """Move each (n, c, h, w) image by up to ``max_shift`` pixels in each direction.

    The uncovered border repeats the edge pixels (background in Fashion-MNIST and MNIST), so no
    new intensity appears. Used on training tasks only: a network trained on exactly centred items
    learns their position, which does not transfer to new classes.
    """
    if max_shift <= 0:
        return images
    height, width = images.shape[-2:]
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    offsets = generator.integers(0, 2 * max_shift + 1, size=(len(images), 2))
    return torch.stack([padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)])


def tuxpaint_stamps_dir() -> Path:
    """Where the Debian package ``tuxpaint-stamps-default`` installs its photos (``TUXPAINT_STAMPS_DIR`` overrides it)."""
    return settings().tuxpaint_stamps_dir


def tuxpaint_folders(root: Path | None = None) -> dict[str, list[Path]]:
    """Return {folder relative to root: its PNG files (not those of sub-folders)}, sorted.

    ``root``: the stamp folder (default ``tuxpaint_stamps_dir()``).
    """
    root = root or tuxpaint_stamps_dir()
    if not root.is_dir():
        raise ValueError(
            f"Tux Paint stamps not found in {root}; install them with `apt-get install tuxpaint-stamps-default` "
            "or set TUXPAINT_STAMPS_DIR"
        )
    folders: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.png")):
        folders.setdefault(path.parent.relative_to(root).as_posix(), []).append(path)
    return folders


def is_under(folder: str, roots: tuple[str, ...]) -> bool:
    """True when ``folder`` is one of ``roots`` or below one of them (food/fruit/cartoon is under food/fruit)."""
    return any(folder == root or folder.startswith(root + "/") for root in roots)


def is_eval_folder(folder: str) -> bool:
    """True for the evaluation folders and everything below them (e.g. food/fruit/cartoon)."""
    return is_under(folder, TUXPAINT_EVAL_FOLDERS)


def tuxpaint_features(backbone_id: str = "efficientnet_lite0", root: Path | None = None) -> dict[str, Tensor]:
    """Return {relative path: (feature_dim,) feature} for every Tux Paint stamp, cached on disk.

    The first call embeds the ~800 photos with ``load_backbone(backbone_id)`` (about three minutes
    on two CPU cores); later calls read ``<cache>/tuxpaint-<backbone>.pt`` (``settings().feature_cache_dir``).
    """
    from fewshot_demo.backbones import load_backbone
    from fewshot_demo.images import load_image

    root = root or tuxpaint_stamps_dir()
    cache = settings().feature_cache_dir / f"tuxpaint-{backbone_id}.pt"
    if cache.is_file():
        stored = torch.load(cache, map_location="cpu", weights_only=True)
        return dict(zip(stored["paths"], stored["features"]))
    backbone = load_backbone(backbone_id, "cpu")
    paths, features = [], []
    from tqdm import tqdm

    files = [path for group in tuxpaint_folders(root).values() for path in group]
    for start in tqdm(range(0, len(files), 32), desc="embedding Tux Paint photos", unit="batch"):
        images = []
        for path in files[start : start + 32]:
            try:
                images.append(load_image(path))
                paths.append(path.relative_to(root).as_posix())
            except ValueError as error:
                print(f"skipping {error}", file=sys.stderr)
        features.append(backbone.embed(images))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"backbone": backbone_id, "paths": paths, "features": torch.cat(features)}, cache)
    return dict(zip(paths, torch.cat(features)))


def tuxpaint_pool(split: str, backbone_id: str = "efficientnet_lite0") -> TaskPool:
    """Cached features of the Tux Paint ``train``, ``val`` or ``eval`` folders (one class each)."""
    features = tuxpaint_features(backbone_id)
    folders = tuxpaint_folders()
    if split == "eval":
        names = list(TUXPAINT_EVAL_FOLDERS)
    else:
        base = [f for f, files in folders.items() if not is_eval_folder(f) and len(files) >= TUXPAINT_MIN_IMAGES]
        # Validation classes are the validation folders; training leaves out everything below them
        # too (animals/insects/cartoon would otherwise teach the validation class before validating it).
        if split == "val":
            names = [f for f in base if f in TUXPAINT_VAL_FOLDERS]
        else:
            names = [f for f in base if not is_under(f, TUXPAINT_VAL_FOLDERS)]
    items, labels = [], []
    for class_id, name in enumerate(names):
        for path in folders[name]:
            key = path.relative_to(tuxpaint_stamps_dir()).as_posix()
            if key in features:
                items.append(features[key])
                labels.append(class_id)
    return TaskPool(torch.stack(items), torch.tensor(labels), names)


def stamp_base_folders(root: Path | None = None) -> dict[str, list[Path]]:
    """Tux Paint stamp folders usable as Conv-4 base classes: at least 4 photos, no garments."""
    return {
        f"tuxpaint/{folder}": files
        for folder, files in tuxpaint_folders(root).items()
        if len(files) >= TUXPAINT_MIN_IMAGES and not is_under(folder, STAMP_EXCLUDED_FOLDERS)
    }


def grayscale_pool(split: str, per_class: int | None = None, seed: int = 0, stamps: bool = False) -> TaskPool:
    """Pixels for the Conv-4 track.

    ``train``: Fashion-MNIST classes 0-4 (training images) and the 10 MNIST digits, 15 base classes,
    and with ``stamps`` also the Tux Paint stamp folders as silhouettes (``stamp_base_folders``);
    ``val``: Fashion-MNIST classes 5-9 from the training images; ``eval``: the same held-out classes
    from the test images, so evaluation images are never seen in training or validation.
    """
    from fewshot_demo.data.grayscale import load_fashion_mnist, load_mnist_digits, load_stamp_silhouettes, normalize_pixels

    generator = np.random.default_rng(seed)
    parts: list[tuple[Any, list[int], str]] = []
    if split == "train":
        parts = [(load_fashion_mnist("train"), list(FASHION_TRAIN_CLASSES), FASHION_SOURCE), (load_mnist_digits(), list(MNIST_TRAIN_CLASSES), "mnist")]
        if stamps:
            silhouettes = load_stamp_silhouettes(stamp_base_folders())
            parts.append((silhouettes, list(range(len(silhouettes.class_names))), ""))
    elif split in ("val", "eval"):
        parts = [(load_fashion_mnist("train" if split == "val" else "test"), list(FASHION_HELD_OUT_CLASSES), FASHION_SOURCE)]
    else:
        raise ValueError(f"split must be train, val or eval, got {split!r}")
    images, labels, names = [], [], []
    for dataset, classes, source in parts:
        for class_id in classes:
            members = np.flatnonzero(dataset.labels == class_id)
            if per_class is not None and per_class < len(members):
                members = np.sort(generator.choice(members, size=per_class, replace=False))
            images.append(normalize_pixels(torch.from_numpy(dataset.images[members])))
            labels.append(torch.full((len(members),), len(names), dtype=torch.long))
            names.append(f"{source}/{dataset.class_names[class_id]}" if source else dataset.class_names[class_id])
    return TaskPool(torch.cat(images), torch.cat(labels), names)


def unlabelled_pool(folder: Path) -> TaskPool:
    """The images of a folder as a pool for self-supervised pretraining: one class, "unlabelled"
    (the methods that read it never read labels)."""
    from fewshot_demo.data.grayscale import load_unlabelled_folder

    pixels, notes = load_unlabelled_folder(folder)
    for note in notes:
        print(note, file=sys.stderr)
    return TaskPool(pixels, torch.zeros(len(pixels), dtype=torch.long), ["unlabelled"])


def load_pool(backbone_id: str, split: str, seed: int = 0, stamps: bool = False) -> TaskPool:
    """The train, val or eval pool of a track (``stamps``: see ``grayscale_pool``)."""
    if backbone_id == "pixels28":
        return grayscale_pool(split, per_class={"train": None, "val": 300, "eval": None}[split], seed=seed, stamps=stamps)
    if backbone_id == "efficientnet_lite0":
        return tuxpaint_pool(split, backbone_id)
    raise ValueError(f"no meta-training data for backbone {backbone_id!r}; use one of {', '.join(TRACKS)}")


# ------------------------------------------------------------------------------------------ training
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
                raise ValueError(f"{self.method} pretrains the Conv-4 on unlabelled images: use --backbone pixels28")
            if self.batch_size < 2:
                raise ValueError(f"--batch-size must be at least 2 images, got {self.batch_size}")
            if self.temperature <= 0:
                raise ValueError(f"--temperature must be positive, got {self.temperature}")
            if not 0 < self.mask_ratio < 1:
                raise ValueError(f"--mask-ratio is a fraction in (0, 1), got {self.mask_ratio}")
            if self.patch_size < 1 or 28 % self.patch_size:
                raise ValueError(f"--patch-size must divide 28 (1, 2, 4, 7, 14), got {self.patch_size}")
            self.view_config()  # checks the view settings
        elif self.images is not None:
            raise ValueError(f"--images is for the self-supervised methods; {self.method} learns from labelled tasks")
        if self.backbone not in TRACKS:
            raise ValueError(f"meta-training needs --backbone {' or '.join(TRACKS)}, got {self.backbone!r}")
        if self.n_way < 2 or min(self.n_shots) < 1 or self.n_query < 1:
            raise ValueError("n_way must be at least 2, n_shot and n_query at least 1")
        if (self.stamp_classes or self.symmetric_classes or self.max_shift or self.fashion_tasks) and self.backbone != "pixels28":
            raise ValueError(
                "--stamp-classes, --symmetric-classes, --max-shift and --fashion-tasks concern images: use them with --backbone pixels28"
            )
        if not 0.0 <= self.fashion_tasks <= 1.0:
            raise ValueError(f"--fashion-tasks is a fraction in [0, 1], got {self.fashion_tasks}")
        if not 0.0 <= self.weight_average < 1.0:
            raise ValueError(f"--weight-average is a decay in [0, 1), got {self.weight_average}")
        if self.max_shift < 0:
            raise ValueError(f"--max-shift must be 0 or more pixels, got {self.max_shift}")

    def view_config(self) -> ViewConfig:
        """The random views of the self-supervised methods."""
        return ViewConfig(min_area=self.min_area, flip=self.flip, contrast=self.contrast, noise=self.noise)


def build_fresh_network(config: TrainConfig, feature_dim: int) -> EmbeddingNetwork:
    if config.backbone == "pixels28":
        return Conv4(in_channels=1, hidden=config.hidden, image_size=28)
    return FeatureProjection(feature_dim, rank=config.rank)


@dataclass
class MetaState:
    """What is being trained: the network, the method's own tensors (both saved) and the modules
    trained beside them and dropped afterwards (``heads``: a projection head, a decoder)."""

    network: EmbeddingNetwork
    extras: dict[str, Tensor] = field(default_factory=dict)
    heads: nn.Module | None = None

    def parameters(self) -> list[Tensor]:
        heads = list(self.heads.parameters()) if self.heads is not None else []
        return list(self.network.parameters()) + list(self.extras.values()) + heads


def init_state(config: TrainConfig, feature_dim: int, device: torch.device) -> MetaState:
    torch.manual_seed(config.seed)
    network = build_fresh_network(config, feature_dim).to(device)
    recipe = recipe_of(config.method)
    return MetaState(network, recipe.init_extras(network, config), recipe.init_heads(network, config))


def task_loss(state: MetaState, config: TrainConfig, task: tuple[Tensor, Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The episodic loss of one task for the gradient-based outer loops; returns (loss, accuracy)."""
    support, support_labels, query, query_labels = task
    support, query, _ = prepare_episode(state.network, support, query)
    return recipe_of(config.method).task_loss(state.network, state.extras, config, support, support_labels, query, query_labels)


def learner_for(state: MetaState, config: TrainConfig) -> FewShotLearner:
    """The test-time learner for the current meta-parameters (the same code users run)."""
    return recipe_of(config.method).learner(state.network, state.extras, config)


def validate(state: MetaState, config: TrainConfig, pool: TaskPool, n_episodes: int) -> float:
    """Mean query accuracy on fixed validation episodes, the learner users run on the current state.

    The episodes are split evenly over ``config.n_shots`` (half 1-shot, half 5-shot by default) and
    drawn by ``episodes.sample_episodes`` from seed ``config.seed + 1``, with 15 queries per class, or
    fewer where classes are small (``episodes.choose_n_query``); they run in ``fewshot_demo.runner``.
    """
    labels = pool.labels.tolist()
    n_way = min(config.n_way, len(pool.class_names))
    accuracies: list[float] = []
    for index, n_shot in enumerate(config.n_shots):
        count = n_episodes // len(config.n_shots) + int(index < n_episodes % len(config.n_shots))
        if count == 0:
            continue
        shape = EpisodeConfig(n_way, n_shot, choose_n_query(labels, n_way, n_shot))
        episodes = sample_episodes(labels, shape, count, seed=config.seed + 1)
        accuracies += run_episodes(lambda: learner_for(state, config), pool.items, episodes, name=config.method).accuracies
    state.network.train()
    return float(np.mean(accuracies))


def meta_train(
    config: TrainConfig,
    train_pool: TaskPool,
    val_pool: TaskPool,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
    world: World | None = None,
) -> tuple[MetaState, dict[str, Any]]:
    """Train and return the state with the best validation accuracy, and a summary.

    Meta-learners train on labelled tasks drawn from ``train_pool``; self-supervised methods
    (``outer_update == "batch"``) on batches of its images alone, never reading its labels.

    Under several processes (``world``, see ``fewshot_demo.distributed``) each process computes its
    share of every step's tasks or images and the gradients are summed over processes, so the
    weights equal a one-process run's up to floating-point rounding; only the main process
    validates and returns the best state, the others return their last one.

    The summary holds the validation accuracy before training (``val_accuracy_init``), the best one
    (``val_accuracy``) and at which iteration it was reached.
    """
    from tqdm import tqdm

    world = world or World()
    train_pool, val_pool = train_pool.to(device), val_pool.to(device)
    fashion_pool = train_pool.classes_starting_with(FASHION_SOURCE + "/") if config.fashion_tasks else None
    if fashion_pool is not None and len(fashion_pool.class_names) < 2:
        raise ValueError("--fashion-tasks needs Fashion-MNIST base classes in the training pool")
    recipe = recipe_of(config.method)
    if recipe.outer_update == "batch" and config.batch_size % world.size:
        raise ValueError(
            f"--batch-size {config.batch_size} must split evenly over the {world.size} processes; "
            f"use a multiple of {world.size}"
        )
    state = init_state(config, train_pool.items.shape[-1], device)
    state.network.train()
    generator = np.random.default_rng(config.seed)
    reptile = recipe.outer_update == "delta"
    if reptile:
        optimizer = torch.optim.SGD(state.parameters(), lr=config.meta_lr)
    else:
        # Scalars (the projection's output scale, the method's own tensors) take the larger step:
        # at the network's rate the scale would stay at its initial value, and it alone decides
        # how confident ProtoNet's probabilities are (the query loss calibrates it).
        scalars = [p for name, p in state.network.named_parameters() if p.ndim == 0] + list(state.extras.values())
        weights = [p for p in state.network.parameters() if p.ndim > 0]
        if state.heads is not None:
            weights += list(state.heads.parameters())
        optimizer = torch.optim.Adam(
            [{"params": weights, "lr": config.meta_lr}, {"params": scalars, "lr": config.step_size_meta_lr}]
        )
    main = world.is_main
    initial = validate(state, config, val_pool, config.val_episodes) if main else float("nan")
    best = {"val_accuracy": initial, "iteration": 0}
    best_state = copy.deepcopy(state)
    # With a high meta learning rate the iterates jump around the best region of the weights;
    # their running average sits nearer its middle, and is what gets validated and kept.
    average = copy.deepcopy(state) if config.weight_average else None
    if main:
        log(f"validation accuracy before training: {initial:.4f}")
    bar = tqdm(range(1, config.iterations + 1), desc=f"training {config.method}", disable=not (progress and main))
    start = time.perf_counter()
    for iteration in bar:
        optimizer.zero_grad()
        if recipe.outer_update == "batch":
            losses, accuracies = _batch_gradients(state, config, train_pool.items, generator, world)
        else:
            losses, accuracies = _task_gradients(state, config, train_pool, fashion_pool, generator, world)
        world.sum_gradients(state.parameters())
        if reptile:
            for group in optimizer.param_groups:  # linear annealing of epsilon, as in the paper
                group["lr"] = config.meta_lr * (1 - (iteration - 1) / config.iterations)
        optimizer.step()
        if average is not None:
            with torch.no_grad():
                for kept, current in zip(average.parameters(), state.parameters()):
                    kept.lerp_(current, 1 - config.weight_average)
        if losses:
            metric = "acc" if recipe.outer_update != "batch" else recipe.metric_name
            bar.set_postfix(**{"loss": f"{np.mean(losses):.3f}", metric: f"{np.mean(accuracies):.3f}",
                               "best": f"{best['val_accuracy']:.3f}"})
        if main and (iteration % config.val_every == 0 or iteration == config.iterations):
            accuracy = validate(state if average is None else average, config, val_pool, config.val_episodes)
            if accuracy > best["val_accuracy"]:
                best = {"val_accuracy": accuracy, "iteration": iteration}
                best_state = copy.deepcopy(state if average is None else average)
            bar.write(f"iteration {iteration}: validation accuracy {accuracy:.4f} (best {best['val_accuracy']:.4f})")
    if not main:  # nothing validated here: the last state (equal to the main process's last state)
        best_state = state if average is None else average
    summary = {
        "val_accuracy_init": round(initial, 4),
        "val_accuracy": round(best["val_accuracy"], 4),
        "best_iteration": best["iteration"],
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    if world.size > 1:
        summary["processes"] = world.size
    return best_state, summary


def _task_gradients(
    state: MetaState, config: TrainConfig, train_pool: TaskPool, fashion_pool: TaskPool | None,
    generator: np.random.Generator, world: World,
) -> tuple[list[float], list[float]]:
    """Accumulate the gradients of this process's share of one meta-batch of labelled tasks.

    Every process draws all ``meta_batch`` tasks (so the generators stay in step) and computes the
    ones ``world.share`` gives it; each task's loss (or Reptile's step) is divided by the whole
    meta-batch, so the gradients summed over processes are the meta-batch's mean.
    """
    recipe = recipe_of(config.method)
    mine = set(world.share(config.meta_batch).tolist())
    losses, accuracies = [], []
    for index in range(config.meta_batch):
        n_shot = int(generator.choice(config.n_shots))
        pool = train_pool
        if fashion_pool is not None and generator.random() < config.fashion_tasks:
            pool = fashion_pool
        n_way = min(config.n_way, len(pool.class_names))
        task = sample_task(pool, n_way, n_shot, config.n_query, generator)
        if config.max_shift:
            support, support_labels, query, query_labels = task
            task = (random_shift(support, config.max_shift, generator), support_labels,
                    random_shift(query, config.max_shift, generator), query_labels)
        if index not in mine:
            continue
        if recipe.outer_update == "delta":
            support, support_labels, query, query_labels = task
            support, query, _ = prepare_episode(state.network, support, query)
            delta = recipe.task_delta(
                state.network, state.extras, config, torch.cat([support, query]), torch.cat([support_labels, query_labels]),
            )
            for name, parameter in state.network.named_parameters():
                # SGD on -delta / meta_batch: theta <- theta + epsilon * mean(phi - theta).
                step = -delta["network." + name] / config.meta_batch
                parameter.grad = step if parameter.grad is None else parameter.grad + step
            continue
        loss, accuracy = task_loss(state, config, task)
        (loss / config.meta_batch).backward()
        losses.append(loss.item())
        accuracies.append(accuracy.item())
    return losses, accuracies


def _batch_gradients(
    state: MetaState, config: TrainConfig, images: Tensor, generator: np.random.Generator, world: World,
) -> tuple[list[float], list[float]]:
    """Accumulate the gradients of this process's share of one batch of unlabelled images.

    The batch (``batch_size`` distinct images, drawn the same in every process) is all the recipe
    gets: pixels, no labels. Its loss is already divided by the whole batch (see ``batch_loss``).
    """
    indices = generator.choice(len(images), size=min(config.batch_size, len(images)), replace=False)
    batch = images[torch.as_tensor(indices, device=images.device)]
    loss, metric = recipe_of(config.method).batch_loss(state.network, state.heads, config, batch, generator, world)
    loss.backward()
    return [loss.item() * world.size], [metric.item()]


def save_trained(state: MetaState, config: TrainConfig, summary: dict[str, Any], train_pool: TaskPool, val_pool: TaskPool, out: Path, command: str) -> Path:
    """Write the checkpoint with its full config (classes, settings, validation accuracy, command)."""
    extras = {name: value.detach() for name, value in state.extras.items()}
    fields: dict[str, Any] = {
        "n_way": config.n_way,
        "n_shots": list(config.n_shots),
        "training": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "training_classes": train_pool.class_names,
        "validation_classes": val_pool.class_names,
        **summary,
        "command": command,
    }
    fields.update(recipe_of(config.method).checkpoint_fields(config))
    return save_checkpoint(out, config.method, state.network, config.backbone, extras, fields)


# ------------------------------------------------------------------------------------------- command
def _settings_only(argv: list[str]) -> list[str]:
    """The arguments that decide the checkpoint: without --no-progress and without where --out put it."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif arg != "--no-progress" and not arg.startswith("--out="):
            kept.append(arg)
    return kept


def _train_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fewshot_demo.train",
        description="Meta-train a few-shot learner episodically, or pretrain one without labels (simclr, mae), "
        "and save a safetensors checkpoint; under torchrun on several processes. "
        "Other commands: `evaluate`, `push`, `pull` (see `python -m fewshot_demo.train evaluate -h`).",
    )
    defaults = TrainConfig()
    parser.add_argument("--method", choices=meta_trained_methods(), default=defaults.method,
                        help="a meta-learner (trained on labelled tasks) or a self-supervised method (simclr, mae: "
                        "trained on the base images without their labels)")
    parser.add_argument("--backbone", choices=TRACKS, default=defaults.backbone)
    parser.add_argument("--n-way", type=int, default=defaults.n_way)
    parser.add_argument("--n-shot", type=int, nargs="+", default=list(defaults.n_shots), help="shots per training task (one drawn per task)")
    parser.add_argument("--n-query", type=int, default=defaults.n_query)
    parser.add_argument("--meta-batch", type=int, default=defaults.meta_batch)
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--meta-lr", type=float, default=defaults.meta_lr)
    parser.add_argument("--step-size-meta-lr", type=float, default=defaults.step_size_meta_lr)
    parser.add_argument("--inner-steps", type=int, default=defaults.inner_steps)
    parser.add_argument("--inner-lr", type=float, default=defaults.inner_lr)
    parser.add_argument("--fixed-inner-lr", action="store_true", help="do not meta-learn per-tensor step sizes")
    parser.add_argument("--rank", type=int, default=defaults.rank)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--stamp-classes", action="store_true", help="pixels28: add the Tux Paint stamp folders (except clothes) as base classes")
    parser.add_argument("--symmetric-classes", action="store_true", help="pixels28: rotated and mirrored base classes count as new classes (x8)")
    parser.add_argument("--max-shift", type=int, default=defaults.max_shift, help="pixels28: move training images by up to this many pixels")
    parser.add_argument("--fashion-tasks", type=float, default=defaults.fashion_tasks,
                        help="pixels28: fraction of training tasks drawn from the Fashion-MNIST base classes only")
    parser.add_argument("--weight-average", type=float, default=defaults.weight_average, help="decay of a moving average of the weights to validate and keep (0: off)")
    parser.add_argument("--val-every", type=int, default=defaults.val_every)
    parser.add_argument("--val-episodes", type=int, default=defaults.val_episodes)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    ssl = parser.add_argument_group("self-supervised pretraining (simclr, mae; no labels are read)")
    ssl.add_argument("--images", type=Path, default=None, metavar="FOLDER",
                     help="pretrain on every image under FOLDER instead of the base classes' images")
    ssl.add_argument("--batch-size", type=int, default=defaults.batch_size, help="unlabelled images per step, over all processes")
    ssl.add_argument("--temperature", type=float, default=defaults.temperature, help="simclr: NT-Xent temperature")
    ssl.add_argument("--mask-ratio", type=float, default=defaults.mask_ratio, help="mae: share of the patches hidden")
    ssl.add_argument("--patch-size", type=int, default=defaults.patch_size, help="mae: side of a square patch in pixels")
    ssl.add_argument("--norm-pix", action="store_true",
                     help="mae: reconstruct each patch normalised by its own mean and spread (He et al. 2022)")
    ssl.add_argument("--min-area", type=float, default=defaults.min_area, help="views: smallest share of the image a crop keeps")
    ssl.add_argument("--flip", action="store_true", help="views: mirror half of them (sensible for garments, not for digits)")
    ssl.add_argument("--contrast", type=float, default=defaults.contrast, help="views: foreground intensity varies by up to this factor")
    ssl.add_argument("--noise", type=float, default=defaults.noise, help="views: standard deviation of added Gaussian noise")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: CUDA when present); under torchrun, "
                        "each process takes the GPU of its local rank")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (per process)")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--dry-run", action="store_true", help="3 iterations, 4 validation episodes, temporary output")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = TrainConfig(
            method=args.method, backbone=args.backbone, n_way=args.n_way, n_shots=tuple(args.n_shot),
            n_query=args.n_query, meta_batch=args.meta_batch,
            iterations=3 if args.dry_run else args.iterations, meta_lr=args.meta_lr,
            step_size_meta_lr=args.step_size_meta_lr,
            inner_steps=args.inner_steps, inner_lr=args.inner_lr, learn_inner_lr=not args.fixed_inner_lr,
            rank=args.rank, hidden=args.hidden, stamp_classes=args.stamp_classes,
            symmetric_classes=args.symmetric_classes, max_shift=args.max_shift, fashion_tasks=args.fashion_tasks,
            weight_average=args.weight_average,
            val_every=args.val_every, val_episodes=4 if args.dry_run else args.val_episodes, seed=args.seed,
            images=None if args.images is None else str(args.images),
            batch_size=args.batch_size, temperature=args.temperature, mask_ratio=args.mask_ratio,
            patch_size=args.patch_size, norm_pix=args.norm_pix, min_area=args.min_area, flip=args.flip,
            contrast=args.contrast, noise=args.noise,
        )
        world, device = join_from_environment(pick_device(args.device))
        torch.manual_seed(config.seed)
        if config.images is not None:
            train_pool = unlabelled_pool(Path(config.images))
        else:
            train_pool = load_pool(config.backbone, "train", config.seed, stamps=config.stamp_classes)
        val_pool = load_pool(config.backbone, "val", config.seed)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    try:
        tasks_pool = symmetric_classes(train_pool) if config.symmetric_classes else train_pool
        with_symmetries = f", {len(tasks_pool.class_names)} with their symmetries" if config.symmetric_classes else ""
        processes = f", {world.size} processes" if world.size > 1 else ""
        unlabelled = " (their labels are never read)" if recipe_of(config.method).outer_update == "batch" else ""
        if world.is_main:
            print(
                f"{config.method} on {config.backbone}: {len(train_pool.class_names)} training classes{with_symmetries} "
                f"({len(tasks_pool.labels)} items){unlabelled}, {len(val_pool.class_names)} validation classes, "
                f"device {device}{processes}"
            )
        try:
            state, summary = meta_train(config, tasks_pool, val_pool, device, progress=not args.no_progress, world=world)
        except ValueError as error:
            parser.exit(2, f"error: {error}\n")
        if world.is_main:
            out = args.out
            if out is None:
                out = Path(tempfile.mkdtemp(prefix="fewshot-dry-run-")) if args.dry_run else SHIPPED_DIR / checkpoint_name(config.method, config.backbone)
            command = "python -m fewshot_demo.train " + " ".join(shlex.quote(a) for a in _settings_only(argv))
            save_trained(state, config, summary, train_pool, val_pool, out, command)
            print(json.dumps({"checkpoint": str(out), **summary}))
        world.barrier()
    finally:
        world.close()


def _evaluate_main(argv: list[str]) -> None:
    from fewshot_demo.evaluation import paired_difference
    from fewshot_demo.methods import LearnerContext

    parser = argparse.ArgumentParser(
        prog="python -m fewshot_demo.train evaluate",
        description="Evaluate learners on a track's held-out classes (Tux Paint's 9 evaluation folders, "
        "or Fashion-MNIST classes 5-9 test images for pixels28) on the same episodes for every method.",
    )
    parser.add_argument("--backbone", choices=TRACKS, default="efficientnet_lite0")
    parser.add_argument("--methods", nargs="+", default=["maml", "maml_scratch", "protonet", "protonet_plain", "linear"])
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--n-shot", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--n-query", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--paired-with", default=None, metavar="METHOD",
                        help="also print each method's paired difference to METHOD on the same episodes")
    args = parser.parse_args(argv)
    try:
        if args.paired_with is not None and args.paired_with not in args.methods:
            raise ValueError(f"--paired-with {args.paired_with} must be one of --methods")
        device = pick_device(args.device)
        pool = load_pool(args.backbone, "eval", args.seed).to(device)
        episodes_by_shot = {
            n_shot: sample_episodes(pool.labels.tolist(), EpisodeConfig(args.n_way, n_shot, args.n_query), args.episodes, args.seed)
            for n_shot in args.n_shot
        }
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    context = LearnerContext(backbone_id=args.backbone, feature_dim=784 if args.backbone == "pixels28" else pool.items.shape[-1], device=device)
    results = []
    for n_shot, episodes in episodes_by_shot.items():
        per_episode: dict[str, list[float]] = {}
        for method in args.methods:
            run = run_episodes(method, pool.items, episodes, context=context)
            per_episode[method] = run.accuracies
            summary = run.summary()
            results.append(summary.to_dict())
            print(f"{n_shot}-shot {method:15s} {summary.accuracy:.4f} +- {summary.ci95:.4f}  {summary.ms_per_episode:.1f} ms/episode", flush=True)
        if args.paired_with is not None:
            for method in args.methods:
                if method != args.paired_with:
                    difference, ci95 = paired_difference(per_episode[method], per_episode[args.paired_with])
                    results.append({"method": method, "minus": args.paired_with, "n_shot": n_shot,
                                    "difference": round(difference, 4), "ci95": round(ci95, 4)})
                    print(f"{n_shot}-shot {method} - {args.paired_with}: {100 * difference:+.2f} +- {100 * ci95:.2f} points", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"backbone": args.backbone, "classes": pool.class_names, "n_way": args.n_way,
                                        "episodes": args.episodes, "seed": args.seed, "results": results}, indent=2) + "\n")


def _hub_main(command: str, argv: list[str]) -> None:
    from fewshot_demo.checkpoints import pull_from_hub, push_to_hub

    parser = argparse.ArgumentParser(prog=f"python -m fewshot_demo.train {command}")
    if command == "push":
        parser.add_argument("checkpoint", type=Path, help="checkpoint folder to upload")
    parser.add_argument("--repo-id", required=True, help="Hugging Face model repository, e.g. you/maml-pixels28")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    try:
        if command == "push":
            print(push_to_hub(args.checkpoint, args.repo_id, private=args.private))
        else:
            print(pull_from_hub(args.repo_id, revision=args.revision))
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "evaluate":
        _evaluate_main(argv[1:])
    elif argv and argv[0] in ("push", "pull"):
        _hub_main(argv[0], argv[1:])
    else:
        _train_main(argv)


if __name__ == "__main__":
    main()
