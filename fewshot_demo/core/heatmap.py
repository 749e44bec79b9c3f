"""Where it looked: how much each region of a picture supports the predicted class.

A backbone's features are the average of its last feature map (EfficientNet-Lite0: 1280 x 7 x 7),
so a picture's cosine similarity to a class prototype splits exactly into one share per cell:

    share[i, j] = <map[:, i, j], prototype / |prototype|> / (h * w * |features|),  summed = cosine

The heat map of a picture is that split for the predicted class (its prototype is the mean of the
class's support features, the space every method's explanations use), over the picture's square
as the backbone read it (padded with white). It needs no gradient and no extra forward pass: the
maps come from the passes that computed the features (``ImageBackbone.embed_with_maps``). It is made
for methods that classify the frozen features; one that fine-tunes or re-normalises the backbone
decides on other features, so it gets none rather than a wrong one.

    heat = support_heat(backbone, images, labels, n_way)           # at fit: every support picture
    looked = where_it_looked(query_maps, predicted, heat, nearest)  # at classification
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fewshot_demo.methods.features import class_means
from fewshot_demo.runtime.device import one_thread

#: Support pictures whose maps are held at once while their heat is computed at fit.
SUPPORT_CHUNK = 16


@runtime_checkable
class FeatureMapEncoder(Protocol):
    """An encoder that can hand back the feature maps it pools (``ImageBackbone``)."""

    has_feature_maps: bool

    def embed_with_maps(self, items: Sequence[Image.Image]) -> tuple[Tensor, Tensor]: ...


def reads_feature_maps(encoder: object) -> bool:
    """True when ``encoder`` gives feature maps (the image backbones that pool one)."""
    return isinstance(encoder, FeatureMapEncoder) and bool(encoder.has_feature_maps)


def unit_prototypes(features: Tensor, labels: Tensor, n_way: int) -> Tensor:
    """(n_way, d) class means of the support features, each scaled to length 1."""
    return torch.nn.functional.normalize(class_means(features.float(), labels.long(), n_way), dim=1)


def class_shares(maps: Tensor, prototypes: Tensor) -> Tensor:
    """Each cell's share of each picture's cosine similarity to each prototype.

    Args:
        maps: (n, d, h, w) last feature maps (their spatial mean is the pictures' features).
        prototypes: (k, d) unit-length prototypes.

    Returns:
        (n, k, h, w) shares; summed over (h, w) they are the (n, k) cosine similarities.
    """
    n, d, h, w = maps.shape
    cells = maps.float().reshape(n, d, h * w)  # (n, d, h*w)
    pooled_norm = cells.mean(dim=2).norm(dim=1).clamp_min(1e-12)  # (n,)
    shares = torch.matmul(prototypes.float(), cells) / (h * w * pooled_norm[:, None, None])  # (n, k, h*w)
    return shares.reshape(n, -1, h, w)


@dataclass(frozen=True)
class SupportHeat:
    """The support pictures' shares for every class, kept with a classifier fitted on images.

    Attributes:
        shares: (n_support, n_way, h, w), see ``class_shares``.
        sizes: (width, height) of each support picture.
        prototypes: (n_way, d) the unit prototypes the shares are for.
    """

    shares: Tensor
    sizes: list[tuple[int, int]]
    prototypes: Tensor


@dataclass(frozen=True)
class PictureHeat:
    """One picture's heat map.

    Attributes:
        shares: (h, w) each cell's share of the picture's cosine similarity to the class prototype.
        size: (width, height) of the picture, to place the map on it.
    """

    shares: np.ndarray
    size: tuple[int, int]


@dataclass(frozen=True)
class WhereItLooked:
    """One query's heat maps: its own and its nearest support pictures', all for the predicted class.

    Attributes:
        class_name: the predicted class the maps are for.
        query: the query's map.
        nearest: support index -> that support picture's map for the same class.
    """

    class_name: str
    query: PictureHeat
    nearest: dict[int, PictureHeat]


def support_heat(encoder: FeatureMapEncoder, images: Sequence[Image.Image], labels: Tensor,
                 n_way: int) -> tuple[Tensor, SupportHeat]:
    """Embed the support pictures with their maps (in chunks); return (features, heat).

    The features are ``encoder.embed(images)``'s, and now cached: the fit that follows costs no
    forward pass.
    """
    features, shares_per_chunk = [], []
    maps_per_chunk = []
    for start in range(0, len(images), SUPPORT_CHUNK):
        chunk_features, chunk_maps = encoder.embed_with_maps(images[start : start + SUPPORT_CHUNK])
        features.append(chunk_features)
        maps_per_chunk.append(chunk_maps.half())
    all_features = torch.cat(features)  # (n_support, d)
    with one_thread(True):  # small products: a second thread only waits for a busy core
        prototypes = unit_prototypes(all_features, labels, n_way)
        for chunk_maps in maps_per_chunk:
            shares_per_chunk.append(class_shares(chunk_maps, prototypes))
    return all_features, SupportHeat(torch.cat(shares_per_chunk), [image.size for image in images], prototypes)


def where_it_looked(query_maps: Tensor, query_sizes: Sequence[tuple[int, int]], predicted: Sequence[int],
                    class_names: Sequence[str], prototypes: Tensor, heat: SupportHeat | None,
                    nearest: Sequence[Sequence[int]]) -> list[WhereItLooked]:
    """The heat maps of each query and of its nearest support pictures, for its predicted class.

    Args:
        query_maps: (n_query, d, h, w) the queries' last feature maps.
        query_sizes: (width, height) of each query picture.
        predicted: (n_query,) predicted class indices.
        class_names: the n_way class names.
        prototypes: (n_way, d) unit prototypes (``unit_prototypes`` of the support).
        heat: the support's shares, or None (a classifier loaded from a file has no pictures).
        nearest: per query, the support indices shown as most similar.
    """
    with one_thread(True):
        shares = class_shares(query_maps, prototypes)  # (n_query, n_way, h, w)
    results = []
    for row, c in enumerate(predicted):
        own = {} if heat is None else {
            int(i): PictureHeat(heat.shares[int(i), c].numpy(), heat.sizes[int(i)]) for i in nearest[row]}
        results.append(WhereItLooked(class_names[c], PictureHeat(shares[row, c].numpy(), query_sizes[row]), own))
    return results


def heat_levels(shares: np.ndarray, side: int) -> np.ndarray:
    """(side, side) heat in [0, 1] over the picture's padded square: the shares upsampled
    (bilinear), negative shares as 0, the largest share as 1."""
    grid = torch.as_tensor(np.clip(shares, 0.0, None), dtype=torch.float32)[None, None]
    with one_thread(True):
        square = torch.nn.functional.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    top = float(square.max())
    return (square / top).numpy() if top > 0 else np.zeros((side, side), dtype=np.float32)


def picture_box(width: int, height: int, side: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of a width x height picture inside the side x side square it is
    padded to, centred, as ``ImageBackbone.preprocess`` pads (and CSS ``object-fit: contain`` shows)."""
    scale = side / max(width, height, 1)
    shown_width, shown_height = max(1, round(width * scale)), max(1, round(height * scale))
    return (side - shown_width) // 2, (side - shown_height) // 2, shown_width, shown_height
