"""Safe image loading: every upload becomes an RGB picture or a ValueError that says what to do.

Handles what users really upload: non-images, truncated files, decompression bombs, grayscale,
palette, RGBA cut-outs, CMYK, 16-bit and animated images, and EXIF-rotated phone photos.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.limits import Limits
from fewshot_demo.config.settings import limits

ImageSource = Union[str, os.PathLike, bytes, Image.Image]


@dataclass(frozen=True)
class ImageLimits:
    """Upload limits that keep one user from exhausting the server.

    Attributes:
        max_file_mb: largest accepted file.
        max_pixels: largest accepted width x height (anything larger is treated as a
            decompression bomb and refused before it is decoded).
    """

    max_file_mb: float = Limits.max_upload_mb
    max_pixels: int = Limits.max_image_pixels

    @classmethod
    def in_force(cls) -> "ImageLimits":
        """The limits of ``fewshot_demo.config.limits`` (``FEWSHOT_MAX_UPLOAD_MB``, ``FEWSHOT_MAX_IMAGE_PIXELS``)."""
        current = limits()
        return cls(current.max_upload_mb, current.max_image_pixels)


#: The defaults; ``load_image`` uses ``ImageLimits.in_force()`` unless given limits.
DEFAULT_LIMITS = ImageLimits()
SUPPORTED_FORMATS = "PNG, JPEG, WebP, GIF, BMP or TIFF"


def _display_name(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return "the image"


def _open(source: ImageSource, limits: ImageLimits) -> Image.Image:
    name = _display_name(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise UserInputError(f"{name}: file not found; upload it again")
            size_mb = path.stat().st_size / 2**20
            if size_mb > limits.max_file_mb:
                raise UserInputError(
                    f"{name} is {size_mb:.0f} MB; images up to {limits.max_file_mb:g} MB are accepted. "
                    "Resize or compress it and upload again."
                )
            data = path.read_bytes()
        else:
            data = bytes(source)
            if len(data) / 2**20 > limits.max_file_mb:
                raise UserInputError(f"{name} is larger than {limits.max_file_mb:g} MB; resize it first")
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except UnidentifiedImageError:
            raise UserInputError(f"{name} is not an image; upload a {SUPPORTED_FORMATS} file") from None
        except Image.DecompressionBombError:  # Pillow's own limit, far above ours: the size says it all
            raise UserInputError(f"{name} has far more than {limits.max_pixels / 1e6:.0f} megapixels; "
                                 "resize it and upload again") from None
        except Exception as error:  # a damaged header can make any of Pillow's readers fail
            raise UserInputError(f"{name} could not be read ({_reason(error)}); upload a {SUPPORTED_FORMATS} file") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise UserInputError(
            f"{name} is {width}x{height} pixels, over the {limits.max_pixels / 1e6:.0f}-megapixel limit; "
            "resize it and upload again"
        )
    return image


def _reason(error: BaseException) -> str:
    """A short reason from a decoder error, without file paths (decoders are given bytes, not paths)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:120]


def check_image_header(source: str | os.PathLike, limits: ImageLimits | None = None) -> tuple[int, int]:
    """Check an image file's size on disk and its width x height from its header, decoding nothing.

    Returns:
        (width, height).

    Raises:
        UserInputError: a file over the size limit, not an image, or over the pixel limit.
    """
    image = _open(source, limits or ImageLimits.in_force())
    return image.size


def _to_8bit(image: Image.Image) -> Image.Image:
    """Convert 16/32-bit integer and float images to 8-bit grayscale, stretching their range."""
    array = np.asarray(image, dtype=np.float64)
    low, high = np.nanmin(array), np.nanmax(array)
    scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
    return Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image, crop_transparent: bool = True) -> Image.Image:
    """Return an RGB version of any Pillow image.

    Transparent pixels become white, and a cut-out (a photo on a transparent background) is cropped
    to its visible part, which is what a backbone should look at.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        alpha = image.getchannel("A")
        box = alpha.point(lambda a: 255 if a > 16 else 0).getbbox()
        if box is None:
            raise UserInputError("is fully transparent; upload a picture with visible content")
        if crop_transparent:
            image = image.crop(box)
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def load_image(source: ImageSource, limits: ImageLimits | None = None) -> Image.Image:
    """Open, fully decode and convert an image to RGB.

    Args:
        source: a path, the file's bytes, or an already-open Pillow image.
        limits: size limits (default: ``ImageLimits.in_force()``); see ``ImageLimits``.

    Raises:
        UserInputError: (a ValueError) with a message that names the file and says what to do;
            no other exception, whatever the bytes.
    """
    name = _display_name(source)
    image = _open(source, limits or ImageLimits.in_force())
    try:
        # Our pixel limit was checked on the header; no warnings filter here, as filters are
        # process-wide and requests decode on several threads at once.
        if getattr(image, "is_animated", False):
            image.seek(0)  # the first frame of an animated GIF/WebP/PNG
        image.load()
        return to_rgb(image)
    except Image.DecompressionBombError:
        raise UserInputError(f"{name} is too large to decode safely; resize it and upload again") from None
    except MemoryError:
        raise UserInputError(f"{name} needs more memory to decode than this server has; resize it and upload again") from None
    except UserInputError as error:  # from to_rgb
        raise UserInputError(f"{name} {error}") from None
    except Exception as error:  # Pillow's decoders fail in many ways on damaged files
        raise UserInputError(
            f"{name} is broken or truncated ({_reason(error)}); re-save it as a {SUPPORTED_FORMATS} file"
        ) from None
