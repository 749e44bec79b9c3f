"""Reference values for the number tests, written out in numpy (float64) from the papers' formulas.

Nothing here calls the package: a test compares what the package computes with what these compute,
so a change of formula in the package shows as a difference.
"""

from __future__ import annotations

import numpy as np


def ref_normalise(fit_on: np.ndarray, x: np.ndarray, power: float | None = 0.5) -> np.ndarray:
    """SimpleShot's CL2N after PT-MAP's power transform: x**power, L2, minus the mean of the fitted
    set (itself transformed and L2-normalised), L2 again. The power applies to non-negative sets only."""
    def pre(a: np.ndarray) -> np.ndarray:
        if power is not None and (fit_on >= 0).all():
            a = np.clip(a, 0, None) ** power
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    centred = pre(x) - pre(fit_on).mean(axis=0)
    return centred / np.linalg.norm(centred, axis=1, keepdims=True)


def ref_means(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.stack([x[labels == c].mean(axis=0) for c in range(labels.max() + 1)])


def ref_squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)  # (len(a), len(b))


def ref_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def ref_sinkhorn(p: np.ndarray, n_iter: int = 30) -> np.ndarray:
    """Rows sum to 1, columns to n_query / n_way."""
    n_query, n_way = p.shape
    q = p / p.sum()
    for _ in range(n_iter):
        q = q / q.sum(axis=1, keepdims=True) / n_query
        q = q / q.sum(axis=0, keepdims=True) / n_way
    return q * n_query


def ref_transductive(support, labels, query, power, temperature, n_iter, balanced, step) -> np.ndarray:
    """Soft k-means refinement of the prototypes (Ren et al. 2018); PT-MAP's features and balancing
    (Hu et al. 2021): features normalised on support + query together."""
    both = np.concatenate([support, query])
    s, q = ref_normalise(both, support, power), ref_normalise(both, query, power)
    n_way = labels.max() + 1
    one_hot = np.eye(n_way)[labels]

    def assign(prototypes):
        p = ref_softmax(-temperature * ref_squared_distances(q, prototypes))
        return ref_sinkhorn(p) if balanced else p

    prototypes = ref_means(s, labels)
    for _ in range(n_iter):
        w = assign(prototypes)
        updated = (one_hot.T @ s + w.T @ q) / (one_hot.sum(0) + w.sum(0))[:, None]
        prototypes = prototypes + step * (updated - prototypes)
    return assign(prototypes)
