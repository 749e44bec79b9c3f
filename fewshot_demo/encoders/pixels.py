"""The ``pixels28`` "backbone": images become the 28x28 grayscale pixels the meta-learned Conv-4 networks read."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image
from torch import Tensor

from fewshot_demo.config.errors import InputKindUnsupportedError
from fewshot_demo.data.grayscale import image_to_pixels28
from fewshot_demo.encoders.backbones import BackboneSpec


class PixelBackbone:
    """The ``pixels28`` "backbone": images become (n, 1, 28, 28) grayscale pixels, not features.

    The Conv-4 meta-learners (``fewshot_demo.methods.networks.Conv4``) read these, normalised exactly as in
    their meta-training (``fewshot_demo.data.grayscale``). ``feature_dim`` is 28 * 28 = 784.
    """

    def __init__(self, spec: BackboneSpec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.feature_dim = spec.input_size * spec.input_size

    @property
    def id(self) -> str:
        return self.spec.id

    modality = "image"
    role = "backbone"
    input_kinds = ("features",)

    def can_split(self, kind: str) -> bool:
        """True: each image becomes its pixels on its own, so images may be read in chunks."""
        return True

    def reading_note(self, images: Sequence[Image.Image]) -> str | None:
        """None: an image is always read whole."""
        return None

    def embed(self, images: Sequence[Image.Image], batch_size: int = 32) -> Tensor:
        """Return (n_images, 1, 28, 28) float32 pixels on the CPU."""
        if not images:
            return torch.empty(0, 1, self.spec.input_size, self.spec.input_size)
        return torch.stack([image_to_pixels28(image) for image in images])

    def prepare(self, kind: str, images: Sequence[Image.Image]) -> Tensor:
        """The pixels for "features"; no other input kind exists for raw pixels.

        Raises:
            InputKindUnsupportedError: for any other kind.
        """
        if kind != "features":
            raise InputKindUnsupportedError(f"backbone {self.id!r} provides only 'features', not {kind!r} inputs")
        return self.embed(images)
