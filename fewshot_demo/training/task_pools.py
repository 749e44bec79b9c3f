"""Labelled items to meta-train on: each track's train, val and eval pools, and the training tasks drawn from them.

The classes of each split come from ``fewshot_demo.data.splits``. ``sample_task`` draws *training*
tasks only; validation and ``train evaluate`` draw their episodes with ``episodes.sample_episodes``
and run them in ``fewshot_demo.core.runner``, as the bench and the comparison do."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import settings
from fewshot_demo.data.grayscale import (
    load_fashion_mnist,
    load_mnist_digits,
    load_stamp_silhouettes,
    load_unlabelled_folder,
    normalize_pixels,
)
from fewshot_demo.data.images import load_image
from fewshot_demo.data.splits import (
    FASHION_HELD_OUT_CLASSES,
    FASHION_SOURCE,
    FASHION_TRAIN_CLASSES,
    MNIST_TRAIN_CLASSES,
    TRACKS,
    stamp_base_folders,
    tuxpaint_folders,
    tuxpaint_split_folders,
    tuxpaint_stamps_dir,
)
from fewshot_demo.encoders.image import load_backbone


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
    ``episodes.sample_episodes`` and run them in ``fewshot_demo.core.runner``, as the bench and the
    comparison do.

    Returns:
        (support, support_labels, query, query_labels) with labels in 0..n_way-1; support is
        (n_way * n_shot, *input_shape), query has up to n_way * n_query items.
    """
    labels = pool.labels.cpu().numpy()
    counts = np.bincount(labels, minlength=len(pool.class_names))
    eligible = np.flatnonzero(counts >= n_shot + 1)
    if len(eligible) < n_way:
        raise UserInputError(
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


def tuxpaint_features(backbone_id: str = "efficientnet_lite0", root: Path | None = None) -> dict[str, Tensor]:
    """Return {relative path: (feature_dim,) feature} for every Tux Paint stamp, cached on disk.

    The first call embeds the ~800 photos with ``load_backbone(backbone_id)`` (about three minutes
    on two CPU cores); later calls read ``<cache>/tuxpaint-<backbone>.pt`` (``settings().feature_cache_dir``).
    """
    root = root or tuxpaint_stamps_dir()
    cache = settings().feature_cache_dir / f"tuxpaint-{backbone_id}.pt"
    if cache.is_file():
        stored = torch.load(cache, map_location="cpu", weights_only=True)
        return dict(zip(stored["paths"], stored["features"]))
    backbone = load_backbone(backbone_id, "cpu")
    paths, features = [], []

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
    names = tuxpaint_split_folders(split)
    items, labels = [], []
    for class_id, name in enumerate(names):
        for path in folders[name]:
            key = path.relative_to(tuxpaint_stamps_dir()).as_posix()
            if key in features:
                items.append(features[key])
                labels.append(class_id)
    return TaskPool(torch.stack(items), torch.tensor(labels), names)


def grayscale_pool(split: str, per_class: int | None = None, seed: int = 0, stamps: bool = False) -> TaskPool:
    """Pixels for the Conv-4 track.

    ``train``: Fashion-MNIST classes 0-4 (training images) and the 10 MNIST digits, 15 base classes,
    and with ``stamps`` also the Tux Paint stamp folders as silhouettes (``stamp_base_folders``);
    ``val``: Fashion-MNIST classes 5-9 from the training images; ``eval``: the same held-out classes
    from the test images, so evaluation images are never seen in training or validation.
    """
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
        raise UserInputError(f"split must be train, val or eval, got {split!r}")
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
    raise UserInputError(f"no meta-training data for backbone {backbone_id!r}; use one of {', '.join(TRACKS)}")
