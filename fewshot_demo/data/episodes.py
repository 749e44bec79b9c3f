"""Episode sampling: N-way K-shot tasks drawn from a labelled pool of items.

An episode holds indices into the pool, never the items themselves, so the same episodes can be
run on cached features, raw images or texts, and every method sees exactly the same tasks.
``sample_episodes`` is the sampler of every evaluation (the bench, the comparison, the text peers,
training's validation and ``train evaluate``); ``fewshot_demo.core.runner`` runs the episodes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from fewshot_demo.config.errors import UserInputError


@dataclass(frozen=True)
class EpisodeConfig:
    """The shape of an episode.

    Attributes:
        n_way: classes per episode.
        n_shot: labelled support items per class.
        n_query: query items per class, scored after fitting on the support.
    """

    n_way: int = 5
    n_shot: int = 5
    n_query: int = 15

    def __post_init__(self) -> None:
        if self.n_way < 2:
            raise UserInputError(f"n_way must be at least 2, got {self.n_way}")
        if self.n_shot < 1 or self.n_query < 1:
            raise UserInputError(f"n_shot and n_query must be at least 1, got {self.n_shot}, {self.n_query}")


@dataclass(frozen=True)
class Episode:
    """One few-shot task, as indices into a pool of items.

    Attributes:
        class_ids: (n_way,) pool class ids; episode label i stands for pool class ``class_ids[i]``.
        support_indices: (n_way * n_shot,) pool indices of the support items.
        support_labels: (n_way * n_shot,) episode labels in 0..n_way-1.
        query_indices: (n_way * n_query,) pool indices of the query items.
        query_labels: (n_way * n_query,) episode labels in 0..n_way-1.
    """

    class_ids: tuple[int, ...]
    support_indices: Tensor
    support_labels: Tensor
    query_indices: Tensor
    query_labels: Tensor

    def split(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """Return (support, query) rows of a pool tensor whose first axis is the pool index."""
        return items[self.support_indices.to(items.device)], items[self.query_indices.to(items.device)]


def eligible_classes(labels: Sequence[int], min_items: int) -> list[int]:
    """Return the sorted class ids that have at least ``min_items`` items."""
    counts = Counter(int(label) for label in labels)
    return sorted(label for label, count in counts.items() if count >= min_items)


def sample_episodes(
    labels: Sequence[int], config: EpisodeConfig, n_episodes: int, seed: int = 0
) -> list[Episode]:
    """Sample ``n_episodes`` episodes from a labelled pool, deterministically from ``seed``.

    Only classes with at least n_shot + n_query items take part.

    Raises:
        UserInputError: if fewer than n_way classes have enough items.
    """
    labels_array = np.asarray(labels, dtype=np.int64)
    classes = eligible_classes(labels_array.tolist(), config.n_shot + config.n_query)
    if len(classes) < config.n_way:
        raise UserInputError(
            f"{config.n_way}-way episodes with {config.n_shot} shots and {config.n_query} queries need "
            f"{config.n_way} classes with at least {config.n_shot + config.n_query} items each; only "
            f"{len(classes)} have that many. Lower --n-way, --n-shot or --n-query, or add items."
        )
    members = {label: np.flatnonzero(labels_array == label) for label in classes}
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n_episodes):
        class_ids = rng.choice(classes, size=config.n_way, replace=False)
        support, query = [], []
        for label in class_ids:
            chosen = rng.choice(members[int(label)], size=config.n_shot + config.n_query, replace=False)
            support.append(chosen[: config.n_shot])
            query.append(chosen[config.n_shot :])
        episodes.append(
            Episode(
                class_ids=tuple(int(c) for c in class_ids),
                support_indices=torch.from_numpy(np.concatenate(support)),
                support_labels=torch.arange(config.n_way).repeat_interleave(config.n_shot),
                query_indices=torch.from_numpy(np.concatenate(query)),
                query_labels=torch.arange(config.n_way).repeat_interleave(config.n_query),
            )
        )
    return episodes


def choose_n_query(labels: Sequence[int], n_way: int, max_shot: int, limit: int = 15) -> int:
    """Queries per class: up to ``limit``, as many as keep every class in play if that is at least 5,
    else as many as keep ``n_way`` classes.

    Raises:
        UserInputError: when fewer than n_way classes have more than ``max_shot`` items.
    """
    sizes = sorted(Counter(labels).values(), reverse=True)
    if len(sizes) < n_way:
        raise UserInputError(f"{n_way}-way episodes need {n_way} classes; the data has {len(sizes)}. Lower N-way")
    every = min(limit, sizes[-1] - max_shot)
    if every >= 5:
        return every
    enough = min(limit, sizes[n_way - 1] - max_shot)
    if enough < 1:
        raise UserInputError(
            f"{max_shot}-shot {n_way}-way needs {n_way} classes with at least {max_shot + 1} items; "
            f"only {sum(s > max_shot for s in sizes)} have that many. Lower K-shot or N-way, or add items"
        )
    return enough


def remap_labels(names: Sequence[str]) -> tuple[list[str], Tensor]:
    """Map arbitrary class names to labels 0..n_way-1 in order of first appearance.

    Returns:
        (class_names, labels): the distinct names, and an (n,) int64 tensor of labels.
    """
    index: dict[str, int] = {}
    labels = [index.setdefault(name, len(index)) for name in names]
    return list(index), torch.tensor(labels, dtype=torch.long)
