"""Labelled data embedded once per encoder, ready for episodes.

    data = read_image_folder(Path("photos"))            # or read_text_file, builtin.load_dataset, ...
    pool = embed_pool(data, "efficientnet_lite0", device)
    pool.prepare("features")                            # (n_items, feature_dim), computed once
    pool.prepare("last_block_input")                    # other input kinds on first use, then kept

``embed_pool`` is the one embedding path for every source: image folders and text files (the bench),
uploads and the tabs' data (the comparison) and the built-in data sets (which pass features read
from their disk cache, see ``fewshot_demo.bench.builtin_pools``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data.episodes import remap_labels
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.encoders.protocol import Encoder
from fewshot_demo.encoders.registry import get_encoder, modality_of

#: Items an encoder that can split its work (``Encoder.can_split``: images) embeds, and prepares
#: for other input kinds, at a time: one progress step each, and a cancelled run stops within one
#: chunk (about 0.2 s of forward passes on a CPU).
EMBED_CHUNK = 8


class Cancelled(Exception):
    """A long embedding or preparation stopped because its ``cancel`` event was set."""


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


def _check_modality(data: LoadedData, encoder_id: str) -> None:
    """Refuse an encoder of another modality before it is loaded (an unknown id is ``get_encoder``'s to refuse)."""
    modality = modality_of(encoder_id)
    if modality is not None and modality != data.modality:
        raise UserInputError(f"{encoder_id!r} reads {modality}s but the data holds {data.modality}s; "
                             f"choose an encoder for {data.modality}s")


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
        progress: show a progress bar while the items are embedded in chunks.
        cancel: stop embedding once this is set (from another thread), within one chunk where the
            encoder can split its work (``Encoder.can_split``).

    Returns:
        The pool; its notes are the data's, plus the encoder's note on how it read them (long texts
        read in windows), if any.

    Raises:
        Cancelled: when ``cancel`` was set while the items were embedded in chunks.
        UserInputError: for an unknown encoder id, or one of another modality than the data.
    """
    _check_modality(data, encoder_id)
    class_names, labels = remap_labels(data.labels)
    encoder = get_encoder(encoder_id, device)
    notes = list(data.notes)
    reading = encoder.reading_note(data.items)
    if reading:
        notes.append(reading)
    start = time.perf_counter()
    if features is None:
        features = _embed(encoder, data, progress, cancel)
    embed_ms = 1000 * (time.perf_counter() - start) / max(len(data.items), 1)

    def prepare(kind: str, cancel: threading.Event | None = None) -> Tensor:
        if encoder.can_split(kind):  # forward passes: in chunks, so that a cancel is heard within one
            return _in_chunks(lambda chunk: encoder.prepare(kind, chunk), data.items, cancel).to(device)
        return encoder.prepare(kind, data.items).to(device)  # e.g. texts: tokens padded over all of them

    return EmbeddedPool(data.modality, encoder.id, class_names, labels, CachedInputs(prepare, features.to(device)),
                        embed_ms, notes)


def _embed(encoder: Encoder, data: LoadedData, progress: bool, cancel: threading.Event | None = None) -> Tensor:
    """(n_items, ...) features: in chunks with a progress bar where the encoder can split its work."""
    if not encoder.can_split("features"):
        return encoder.embed(data.items)
    if not data.items:
        return torch.empty(0, encoder.feature_dim)
    bar = tqdm(total=len(data.items), desc="embedding", leave=False, disable=not progress)

    def embed(chunk: list[Any]) -> Tensor:
        bar.update(len(chunk))
        return encoder.embed(chunk)

    try:
        return _in_chunks(embed, data.items, cancel)
    finally:
        bar.close()
