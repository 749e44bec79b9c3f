"""Random views of 28x28 grayscale images, for self-supervised pretraining (no labels involved).

    params = draw_views(len(images), ViewConfig(), generator)   # numpy: cheap, drawn for a whole batch
    views = apply_views(images[mine], params.take(mine))        # torch: only the images this process computes

Parameters are drawn for the whole (global) batch from one seeded generator and applied to any part
of it, so processes that split a batch draw identical parameters and a split run computes exactly
the views one process would (see ``fewshot_demo.runtime.distributed``).

A view is a random resized crop (a zoom on part of the image, a change of aspect ratio, a shift),
optionally a horizontal mirror, a random contrast and Gaussian noise. Pixels are in [-1, 1] with the
background at -1 (``data.grayscale.normalize_pixels``); content moved out of frame is replaced by
the edge pixels, which are background, so no new intensity appears at the border.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot_demo.config.errors import UserInputError


@dataclass(frozen=True)
class ViewConfig:
    """How strongly views differ from their image.

    Attributes:
        min_area: smallest share of the image a crop keeps (1: no cropping, shifts only).
        max_aspect: crops have an aspect ratio between 1 / max_aspect and max_aspect.
        flip: mirror half of the views left-right. Sensible for garments (a mirrored shoe is a
            shoe); not for digits and letters, where it makes another symbol.
        contrast: foreground intensity is scaled by a factor in [1 - contrast, 1 + contrast]
            (the background stays at -1), then clipped to [-1, 1].
        noise: standard deviation of the Gaussian noise added to every pixel.
    """

    min_area: float = 0.5
    max_aspect: float = 4 / 3
    flip: bool = False
    contrast: float = 0.4
    noise: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.min_area <= 1:
            raise UserInputError(f"the smallest crop area is a fraction in (0, 1], got {self.min_area}")
        if self.max_aspect < 1:
            raise UserInputError(f"max_aspect must be at least 1, got {self.max_aspect}")
        if not 0 <= self.contrast < 1 or self.noise < 0:
            raise UserInputError(f"contrast must be in [0, 1) and noise at least 0, got {self.contrast}, {self.noise}")


@dataclass(frozen=True)
class ViewParams:
    """One random view per image of a batch (numpy arrays of length n).

    Attributes:
        scale_x, scale_y: the crop's width and height as a share of the image's.
        shift_x, shift_y: the crop's centre, in [-1, 1] image coordinates.
        mirror: -1 to mirror left-right, else 1.
        contrast: foreground intensity factor.
        noise_seed: seeds the view's Gaussian noise.
    """

    scale_x: np.ndarray
    scale_y: np.ndarray
    shift_x: np.ndarray
    shift_y: np.ndarray
    mirror: np.ndarray
    contrast: np.ndarray
    noise_seed: np.ndarray
    noise: float

    def take(self, indices: np.ndarray) -> "ViewParams":
        """The parameters of some of the batch's images, in the order of ``indices``."""
        return ViewParams(*(getattr(self, name)[indices] for name in (
            "scale_x", "scale_y", "shift_x", "shift_y", "mirror", "contrast", "noise_seed")), noise=self.noise)


def draw_views(n: int, config: ViewConfig, generator: np.random.Generator) -> ViewParams:
    """Draw the parameters of one random view for each of ``n`` images."""
    area = generator.uniform(config.min_area, 1.0, size=n)
    log_aspect = generator.uniform(-np.log(config.max_aspect), np.log(config.max_aspect), size=n)
    aspect = np.exp(log_aspect)
    scale_x = np.minimum(np.sqrt(area * aspect), 1.0)
    scale_y = np.minimum(np.sqrt(area / aspect), 1.0)
    shift_x = generator.uniform(-1.0, 1.0, size=n) * (1 - scale_x)
    shift_y = generator.uniform(-1.0, 1.0, size=n) * (1 - scale_y)
    mirror = np.where(generator.random(n) < 0.5, -1.0, 1.0) if config.flip else np.ones(n)
    contrast = generator.uniform(1 - config.contrast, 1 + config.contrast, size=n)
    noise_seed = generator.integers(0, 2**31 - 1, size=n)
    return ViewParams(scale_x, scale_y, shift_x, shift_y, mirror, contrast, noise_seed, config.noise)


def apply_views(images: Tensor, params: ViewParams) -> Tensor:
    """Make the views: (n, 1, h, w) images in [-1, 1] -> (n, 1, h, w) views, on the images' device."""
    n = len(images)
    device, dtype = images.device, images.dtype
    as_tensor = lambda values: torch.as_tensor(values, dtype=dtype, device=device)  # noqa: E731
    theta = torch.zeros(n, 2, 3, dtype=dtype, device=device)
    theta[:, 0, 0] = as_tensor(params.scale_x * params.mirror)
    theta[:, 0, 2] = as_tensor(params.shift_x)
    theta[:, 1, 1] = as_tensor(params.scale_y)
    theta[:, 1, 2] = as_tensor(params.shift_y)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    views = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    views = -1 + (views + 1) * as_tensor(params.contrast).view(n, 1, 1, 1)  # background stays at -1
    if params.noise > 0:
        noise = torch.stack([
            torch.randn(images.shape[1:], generator=torch.Generator().manual_seed(int(seed)), dtype=dtype)
            for seed in params.noise_seed
        ]).to(device)
        views = views + params.noise * noise
    return views.clamp(-1, 1)
