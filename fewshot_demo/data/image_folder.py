"""Image folders in torchvision ImageFolder layout: one sub-folder of images per class."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fewshot_demo.config.errors import UserInputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class ImageFolderListing:
    """Image files found under a root folder.

    Attributes:
        paths: one path per image.
        labels: the class name (sub-folder name) of each image.
        skipped: files that were not images, as (path, reason), so the caller can say so.
    """

    paths: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return sorted(set(self.labels))


def list_image_folder(root: str | Path) -> ImageFolderListing:
    """List ``root/<class>/<image>`` files, sorted, without opening them.

    Files directly under ``root`` and hidden files are ignored; files whose suffix is not an image
    suffix are recorded in ``skipped``.

    Raises:
        UserInputError: if ``root`` is not a folder or has no class sub-folders with images.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserInputError(f"{root} is not a folder; give a folder with one sub-folder of images per class")
    listing = ImageFolderListing()
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                listing.paths.append(path)
                listing.labels.append(class_dir.name)
            else:
                listing.skipped.append((path, f"not an image file ({path.suffix or 'no suffix'})"))
    if not listing.paths:
        raise UserInputError(
            f"{root} has no images in class sub-folders; expected {root}/<class name>/<image files>"
        )
    return listing
