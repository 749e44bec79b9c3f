"""Images kept PNG-compressed in memory and decoded when read.

A browser session keeps its last comparison's data set between runs (to reuse its embeddings and to
show each method's mistakes). Decoded, the 35 photos of a bundled example set take 2.7 MB; packed
as PNG (lossless, the fastest compression level) 1.1 MB, so 50 sessions keep about 80 MB less.

    packed = PackedImages(images)    # a read-only sequence of the same RGB images
    packed[3]                        # decoded again, pixel for pixel the original
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import overload

from PIL import Image


class PackedImages(Sequence[Image.Image]):
    """A read-only sequence of images held as PNG bytes; each read decodes a fresh copy."""

    def __init__(self, images: Iterable[Image.Image]) -> None:
        self._packed = [_pack(image) for image in images]

    def __len__(self) -> int:
        return len(self._packed)

    @overload
    def __getitem__(self, index: int) -> Image.Image: ...

    @overload
    def __getitem__(self, index: slice) -> list[Image.Image]: ...

    def __getitem__(self, index: int | slice) -> Image.Image | list[Image.Image]:
        if isinstance(index, slice):
            return [_unpack(packed) for packed in self._packed[index]]
        return _unpack(self._packed[index])

    @property
    def nbytes(self) -> int:
        """The bytes held (the PNG files)."""
        return sum(len(packed) for packed in self._packed)


def _pack(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _unpack(packed: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(packed))
    image.load()
    return image
