"""Labelled items, read once and ready to embed: image folders, text files, what a tab holds.

    data = read_image_folder(Path("photos"))          # or read_text_file(Path("texts.csv"))
    data.class_names                                  # in order of first appearance
    data = data_from_items("text", ["hi", "sell"], ["greeting", "finance"])

Uploads (zips of class folders) are read by ``fewshot_demo.data.zips``, the built-in data sets by
``fewshot_demo.data.builtin``; ``fewshot_demo.bench.pools`` embeds any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image
from tqdm.auto import tqdm

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data.image_folder import list_image_folder
from fewshot_demo.data.images import load_image
from fewshot_demo.data.texts import read_text_table

#: What items can be: RGB images or texts.
MODALITIES = ("image", "text")
#: Images are kept at most this large (the backbones read 224 px), to keep pools small in memory.
MAX_IMAGE_SIDE = 320


@dataclass(frozen=True)
class LoadedData:
    """Labelled items, ready to embed.

    Attributes:
        modality: "image" (items are RGB PIL images) or "text" (items are strings).
        items: one item per example.
        labels: the class name of each item.
        notes: what the reader should know (subsets taken, files skipped, ...).
    """

    modality: str
    items: list[Any]
    labels: list[str]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise UserInputError(f"modality must be 'image' or 'text', got {self.modality!r}")
        if len(self.items) != len(self.labels):
            raise UserInputError(f"got {len(self.items)} items but {len(self.labels)} labels; give one label per item")
        if len(set(self.labels)) < 2:
            raise UserInputError("a comparison needs at least 2 classes with examples; add another class")

    @property
    def class_names(self) -> list[str]:
        """Distinct class names in order of first appearance (label i of a pool is class_names[i])."""
        return list(dict.fromkeys(self.labels))


def small(image: Image.Image) -> Image.Image:
    """Shrink ``image`` in place to fit ``MAX_IMAGE_SIDE`` pixels; return it."""
    image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    return image


def read_image_folder(root: Path, max_side: int | None = None, progress: bool = False) -> LoadedData:
    """Every readable image of a folder of class sub-folders; other and unreadable files become notes.

    Args:
        root: ``root/<class name>/<image files>``.
        max_side: shrink larger images to fit this many pixels (None: keep them as they are).
        progress: show a progress bar while images load.

    Raises:
        UserInputError: when ``root`` is not such a folder, or fewer than 2 classes have readable images.
    """
    root = Path(root)
    listing = list_image_folder(root)
    notes = [f"skipped {path.relative_to(root)}: {reason}" for path, reason in listing.skipped]
    items, labels = [], []
    for file, label in zip(tqdm(listing.paths, desc="loading images", leave=False, disable=not progress), listing.labels):
        try:
            image = load_image(file)
        except ValueError as error:
            notes.append(f"skipped {error}")
            continue
        if max_side is not None:
            image.thumbnail((max_side, max_side))
        items.append(image)
        labels.append(label)
    return LoadedData("image", items, labels, tuple(notes))


def read_text_file(path: Path) -> LoadedData:
    """The texts and labels of a CSV/TSV/JSONL file with ``text`` and ``label`` columns, cleaned
    (its notes say what the cleaning skipped or merged; see ``data.texts.read_text_table``)."""
    table = read_text_table(Path(path))
    return LoadedData("text", list(table.texts), list(table.labels), tuple(table.notes))


def _images_from_items(items: Sequence[Any], labels: Sequence[str]) -> LoadedData:
    """Images as paths or PIL images, each loaded, made RGB and kept small; unreadable ones become notes."""
    images, kept, notes = [], [], []
    for item, label in zip(items, labels):
        try:
            images.append(small(load_image(item)))
            kept.append(str(label))
        except ValueError as error:
            notes.append(f"skipped {error}")
    return LoadedData("image", images, kept, tuple(notes))


def _texts_from_items(items: Sequence[Any], labels: Sequence[str]) -> LoadedData:
    return LoadedData("text", [str(item) for item in items], [str(label) for label in labels])


#: How each modality's items are read from what a tab holds.
_FROM_ITEMS: dict[str, Callable[[Sequence[Any], Sequence[str]], LoadedData]] = {
    "image": _images_from_items,
    "text": _texts_from_items,
}


def data_from_items(modality: str, items: Sequence[Any], labels: Sequence[str]) -> LoadedData:
    """Wrap what the user entered in the image or text tab (images as paths or PIL images, or texts).

    Raises:
        UserInputError: for a bad modality, unreadable images, or fewer than two classes.
    """
    if modality not in _FROM_ITEMS:
        raise UserInputError(f"modality must be 'image' or 'text', got {modality!r}")
    return _FROM_ITEMS[modality](items, labels)
