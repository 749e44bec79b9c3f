"""Labelled data and its pools: items read once, embedded once, ready for episodes.

    data = read_image_folder(Path("photos"))            # or read_text_file, builtin.load_dataset, ...
    pool = embed_pool(data, "efficientnet_lite0", device)
    pool.prepare("features")                            # (n_items, feature_dim), computed once
    pool.prepare("last_block_input")                    # other input kinds on first use, then kept

``embed_pool`` is the one embedding path for every source: image folders and text files (the bench),
uploads and the tabs' data (the comparison) and the built-in data sets (which pass features read
from their disk cache).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from fewshot_demo.config.errors import InputKindUnsupportedError, UserInputError
from fewshot_demo.data.episodes import remap_labels

MODALITIES = ("image", "text")
#: Images are embedded, and prepared for other input kinds, in chunks of this many: one progress
#: step each, and a cancelled run stops within one chunk (about 0.2 s of forward passes on a CPU).
EMBED_CHUNK = 8


class Cancelled(Exception):
    """A long embedding or preparation stopped because its ``cancel`` event was set."""


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


@dataclass
class EmbeddedPool:
    """A data set embedded once, ready for episodes.

    Attributes:
        modality: "image" or "text".
        encoder_id: backbone or encoder id.
        class_names: names of the classes; label i is class_names[i].
        labels: (n_items,) labels.
        prepare: ``prepare(kind, cancel=None)``: the (n_items, ...) inputs of an input kind, computed
            on first use (stopping with ``Cancelled`` once ``cancel`` is set) and cached.
        embed_ms_per_item: time to embed one item, averaged over the pool.
        notes: what the reader should know (skipped files, long texts read in windows, ...).
    """

    modality: str
    encoder_id: str
    class_names: list[str]
    labels: Tensor
    prepare: Callable[..., Tensor]
    embed_ms_per_item: float
    notes: list[str]

    @property
    def feature_dim(self) -> int:
        """Size of the features' second axis (1280 for Lite0 features; 1 for pixels28's (n, 1, 28, 28))."""
        return int(self.prepare("features").shape[1])


class CachedInputs:
    """``prepare`` with its results kept per input kind, starting from the features already computed.

    Calling it, ``get(kind, cancel=None)``, passes ``cancel`` (a ``threading.Event``) on to a
    ``prepare`` that takes it; a cancelled preparation keeps nothing.
    """

    def __init__(self, prepare: Callable[..., Tensor], features: Tensor) -> None:
        self._prepare = prepare
        self._inputs = {"features": features}

    def __call__(self, kind: str, cancel: threading.Event | None = None) -> Tensor:
        if kind not in self._inputs:
            self._inputs[kind] = self._prepare(kind, cancel=cancel) if cancel is not None else self._prepare(kind)
        return self._inputs[kind]

    def release(self) -> None:
        """Keep the features only: other kinds are prepared again when next asked for. The
        preprocessed pixels of 1000 images take 600 MB, against 5 MB for their features."""
        self._inputs = {"features": self._inputs["features"]}


def _in_chunks(make: Callable[[list[Any]], Tensor], items: list[Any], cancel: threading.Event | None) -> Tensor:
    """``make`` over ``EMBED_CHUNK`` items at a time, concatenated; checks ``cancel`` before each chunk.

    Raises:
        Cancelled: once ``cancel`` is set.
    """
    parts = []
    for start in range(0, len(items), EMBED_CHUNK):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        parts.append(make(items[start : start + EMBED_CHUNK]))
    return torch.cat(parts)


def embed_pool(
    data: LoadedData, encoder_id: str, device: torch.device, features: Tensor | None = None, progress: bool = False,
    cancel: threading.Event | None = None,
) -> EmbeddedPool:
    """Embed every item once with an image backbone or text encoder; other input kinds on demand.

    Args:
        data: the items and labels.
        encoder_id: image backbone or text encoder id.
        device: where the pool's tensors live.
        features: (n_items, ...) features computed earlier for these items (a disk cache), if any.
        progress: show a progress bar while images are embedded.
        cancel: stop embedding images once this is set (from another thread).

    Returns:
        The pool; its notes are the data's, plus a note when texts are read in windows.

    Raises:
        Cancelled: when ``cancel`` was set while images were embedded.
    """
    class_names, labels = remap_labels(data.labels)
    notes = list(data.notes)
    if data.modality == "image":
        from fewshot_demo.encoders.image import load_backbone

        encoder = load_backbone(encoder_id, device)
    else:
        from fewshot_demo.encoders.text import load_encoder

        encoder = load_encoder(encoder_id, device)
        truncation = encoder.truncation_note(data.items)
        if truncation:
            notes.append(truncation)
    start = time.perf_counter()
    if features is None:
        features = _embed(encoder, data, progress, cancel)
    embed_ms = 1000 * (time.perf_counter() - start) / max(len(data.items), 1)
    make_inputs = getattr(encoder, "prepare", None)

    def prepare(kind: str, cancel: threading.Event | None = None) -> Tensor:
        if make_inputs is None:
            raise InputKindUnsupportedError(f"backbone {encoder_id!r} provides only 'features', not {kind!r} inputs")
        if data.modality == "image":  # forward passes: in chunks, so that a cancel is heard within one
            return _in_chunks(lambda chunk: make_inputs(kind, chunk), data.items, cancel).to(device)
        return make_inputs(kind, data.items).to(device)  # texts: tokens only, padded over all of them

    return EmbeddedPool(data.modality, encoder.id, class_names, labels, CachedInputs(prepare, features.to(device)),
                        embed_ms, notes)


def _embed(encoder: Any, data: LoadedData, progress: bool, cancel: threading.Event | None = None) -> Tensor:
    if data.modality == "text":
        return encoder.embed(data.items)
    if not data.items:
        return torch.empty(0, encoder.feature_dim)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(data.items), desc="embedding", leave=False, disable=not progress)

    def embed(chunk: list[Any]) -> Tensor:
        bar.update(len(chunk))
        return encoder.embed(chunk)

    try:
        return _in_chunks(embed, data.items, cancel)
    finally:
        bar.close()


# --------------------------------------------------------------------------------------- reading
def read_image_folder(root: Path, max_side: int | None = None, progress: bool = False) -> LoadedData:
    """Every readable image of a folder of class sub-folders; other and unreadable files become notes.

    Args:
        root: ``root/<class name>/<image files>``.
        max_side: shrink larger images to fit this many pixels (None: keep them as they are).
        progress: show a progress bar while images load.

    Raises:
        UserInputError: when ``root`` is not such a folder, or fewer than 2 classes have readable images.
    """
    from tqdm.auto import tqdm

    from fewshot_demo.data.image_folder import list_image_folder
    from fewshot_demo.data.images import load_image

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
    (its notes say what the cleaning skipped or merged; see ``text.data.read_text_table``)."""
    from fewshot_demo.data.texts import read_text_table

    table = read_text_table(Path(path))
    return LoadedData("text", list(table.texts), list(table.labels), tuple(table.notes))
