"""A project file: the whole support set in one zip, reopened to edit and classify again.

    write_project(Project("image", [("bird", ["b1.jpg", "b2.jpg"]), ("fish", ["f1.jpg"])], "protonet"), "demo.zip")
    with open_upload("demo.zip") as project:          # the files live until the block ends
        project.classes, project.method, project.options, project.queries

Layout of the zip (format ``fewshot-demo-project``, version ``PROJECT_VERSION``)::

    fewshot-project.json          the manifest: format, version, modality, classes in order (name and
                                  folder), method, options, encoder, app version, created time
    support/01-bird/001-b1.jpg    images: one folder per class, files numbered in row order
    query/001-q1.jpg              optional query images
    support.csv                   texts: text,label rows (instead of the support folders)
    query.csv                     optional query texts, one per row (column text)

Reading reuses ``data.zips.unpacked_zip`` (sizes, file counts, paths, encryption checked from the
zip's directory before anything is unpacked) and the request limits; every problem is a
``UserInputError`` that says what to do. A zip without a manifest that holds class folders of
images is read as such (method and options at their defaults).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from PIL import Image

from fewshot_demo.config.checks import check_file_sizes
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.config.version import __version__
from fewshot_demo.core.class_names import MAX_NAME_CHARS
from fewshot_demo.data.image_folder import IMAGE_SUFFIXES
from fewshot_demo.data.labelled import MODALITIES, LoadedData, data_from_items
from fewshot_demo.data.texts import clean_text, read_text_table
from fewshot_demo.data.zips import PROJECT_MANIFEST, data_from_upload, read_zip_folder, unpacked_zip
from fewshot_demo.encoders.registry import default_encoder, default_method, modality_of
from fewshot_demo.methods import get_method

PROJECT_FORMAT = "fewshot-demo-project"
#: The format version this app writes and the newest it reads.
PROJECT_VERSION = 1
MANIFEST = PROJECT_MANIFEST
#: The largest manifest read (it names classes and options only).
MAX_MANIFEST_BYTES = 2**20
SUPPORT_DIR, QUERY_DIR, SUPPORT_CSV, QUERY_CSV = "support", "query", "support.csv", "query.csv"
#: What a refused file's message ends with.
SAVE_AGAIN = "open the project in the app that saved it and save it again, or pick another file"


@dataclass(frozen=True)
class Project:
    """What a project holds: the class rows, the method and its options, the encoder, the queries.

    Attributes:
        modality: "image" (items are image paths or PIL images) or "text" (items are strings).
        classes: (class name, items) in row order.
        method: a registry key.
        options: the method's options by name (JSON values).
        encoder_id: the backbone or encoder (default: the modality's).
        queries: query items (image paths or PIL images, or texts), possibly none.
        app_version: the app version that wrote the file.
        created: when it was written (ISO 8601, UTC).
        notes: what reading it should tell the user (classes added, a zip without manifest).
    """

    modality: str
    classes: list[tuple[str, list[Any]]]
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    encoder_id: str = ""
    queries: list[Any] = field(default_factory=list)
    app_version: str = __version__
    created: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.encoder_id:
            object.__setattr__(self, "encoder_id", default_encoder(_checked_modality(self.modality, "the project")))

    @property
    def labelled(self) -> tuple[list[Any], list[str]]:
        """Every support item and its class name, in row order."""
        items = [item for _, values in self.classes for item in values]
        return items, [name for name, values in self.classes for _ in values]

    def copied_to(self, folder: Path) -> Project:
        """This project with its files copied into ``folder`` (they outlive ``open_upload``'s block)."""
        def copy(item: Any, where: str) -> Any:
            if not isinstance(item, Path):
                return item  # a text
            target = folder / where / item.name
            target.parent.mkdir(parents=True, exist_ok=True)
            return str(shutil.copyfile(item, target))
        classes = [(name, [copy(item, f"class-{position:02d}") for item in items])
                   for position, (name, items) in enumerate(self.classes, 1)]
        return replace(self, classes=classes, queries=[copy(item, QUERY_DIR) for item in self.queries])


# ------------------------------------------------------------------------------------------ checks
def _checked_modality(value: Any, name: str) -> str:
    if value not in MODALITIES:
        raise UserInputError(f"{name} holds neither images nor texts (modality {str(value)[:20]!r}); {SAVE_AGAIN}")
    return value


def _check_names(names: Sequence[str], name: str) -> None:
    """1..max_classes distinct, non-empty class names, each at most ``MAX_NAME_CHARS``."""
    if not names:
        raise UserInputError(f"{name} has no classes; {SAVE_AGAIN}")
    if len(names) > limits().max_classes:
        raise UserInputError(f"{name} has {len(names)} classes; this app takes at most {limits().max_classes}")
    seen: set[str] = set()
    for position, class_name in enumerate(names, 1):
        if not isinstance(class_name, str) or not class_name.strip():
            raise UserInputError(f"class {position} of {name} has no name; give every class a name")
        if len(class_name) > MAX_NAME_CHARS:
            raise UserInputError(f"class {position} of {name} has a name of {len(class_name)} characters; "
                                 f"keep names under {MAX_NAME_CHARS}")
        if class_name.casefold() in seen:
            raise UserInputError(f"two classes of {name} are named {class_name!r}; give each class a different name")
        seen.add(class_name.casefold())


def _check_setup(modality: str, method: Any, options: Any, encoder_id: Any, name: str) -> None:
    """The method exists, the options are JSON scalars by name, the encoder reads this modality."""
    if not isinstance(method, str):
        raise UserInputError(f"{name} names no method; {SAVE_AGAIN}")
    try:
        get_method(method)
    except UserInputError as error:
        raise UserInputError(f"{name} uses a method this app does not have: {error}") from None
    if not isinstance(options, Mapping) or not all(
            isinstance(key, str) and (value is None or isinstance(value, (bool, int, float, str)))
            for key, value in options.items()):
        raise UserInputError(f"{name}: the method's options must be names with numbers, text or true/false; "
                             f"{SAVE_AGAIN}")
    if not isinstance(encoder_id, str) or modality_of(encoder_id) != modality:
        raise UserInputError(f"{name} uses the {modality} encoder {str(encoder_id)[:60]!r}, which this app does "
                             f"not have; change \"encoder\" in {MANIFEST} to {default_encoder(modality)!r}")


def _slug(text: str, limit: int = 40) -> str:
    """A file-name-safe form of ``text`` (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:limit] or "item"


# ------------------------------------------------------------------------------------------ layouts
class _Layout:
    """How one modality's classes and queries sit in the zip."""

    def write(self, archive: zipfile.ZipFile, project: Project) -> list[dict[str, Any]]:
        """Write the items; return the manifest's class entries."""
        raise NotImplementedError

    def read(self, root: Path, entries: list[dict[str, Any]], name: str) -> tuple[list, list, list[str]]:
        """(classes, queries, notes) from an unpacked project."""
        raise NotImplementedError


class _ImageLayout(_Layout):
    @staticmethod
    def _write_image(archive: zipfile.ZipFile, item: Any, stem: str) -> None:
        if isinstance(item, (str, Path)) and Path(item).suffix.lower() in IMAGE_SUFFIXES:
            archive.write(item, f"{stem}-{_slug(Path(item).name, 60)}", compress_type=zipfile.ZIP_STORED)
            return
        if not isinstance(item, Image.Image):
            raise UserInputError(f"{str(item)[:60]!r} is not an image file; give image paths or PIL images")
        buffer = io.BytesIO()
        item.save(buffer, format="PNG")
        archive.writestr(f"{stem}-image.png", buffer.getvalue())

    def write(self, archive: zipfile.ZipFile, project: Project) -> list[dict[str, Any]]:
        entries = []
        for position, (class_name, items) in enumerate(project.classes, 1):
            folder = f"{SUPPORT_DIR}/{position:02d}-{_slug(class_name)}"
            for number, item in enumerate(items, 1):
                self._write_image(archive, item, f"{folder}/{number:03d}")
            entries.append({"name": class_name, "folder": folder, "count": len(items)})
        for number, item in enumerate(project.queries, 1):
            self._write_image(archive, item, f"{QUERY_DIR}/{number:03d}")
        return entries

    def read(self, root: Path, entries: list[dict[str, Any]], name: str) -> tuple[list, list, list[str]]:
        current = limits()
        classes = []
        for entry in entries:
            folder = entry.get("folder")
            parts = folder.split("/") if isinstance(folder, str) else []
            if len(parts) != 2 or parts[0] != SUPPORT_DIR or parts[1] in ("", ".", "..") or "\\" in folder:
                raise UserInputError(f"{name}: class {entry['name']!r} names an unsafe folder; {SAVE_AGAIN}")
            files = _image_files(root / SUPPORT_DIR / parts[1])
            if len(files) > current.max_images_per_class:
                raise UserInputError(f"{name}: class {entry['name']!r} has {len(files)} images; this app takes at most "
                                     f"{current.max_images_per_class} per class. Remove some from {folder}/")
            classes.append((entry["name"], files))
        queries = _image_files(root / QUERY_DIR)
        if len(queries) > current.max_query_images:
            raise UserInputError(f"{name} has {len(queries)} query images; this app takes at most "
                                 f"{current.max_query_images}. Remove some from {QUERY_DIR}/")
        return classes, queries, []


class _TextLayout(_Layout):
    def write(self, archive: zipfile.ZipFile, project: Project) -> list[dict[str, Any]]:
        rows = io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows((clean_text(text), class_name) for class_name, texts in project.classes for text in texts)
        archive.writestr(SUPPORT_CSV, rows.getvalue())
        if project.queries:
            queries = io.StringIO()
            writer = csv.writer(queries, lineterminator="\n")
            writer.writerow(["text"])
            writer.writerows([clean_text(text)] for text in project.queries)
            archive.writestr(QUERY_CSV, queries.getvalue())
        return [{"name": class_name, "count": len(texts)} for class_name, texts in project.classes]

    def read(self, root: Path, entries: list[dict[str, Any]], name: str) -> tuple[list, list, list[str]]:
        current = limits()
        classes: dict[str, list[str]] = {entry["name"]: [] for entry in entries}
        notes = []
        if (root / SUPPORT_CSV).is_file():
            table = read_text_table(root / SUPPORT_CSV, name=SUPPORT_CSV)
            if len(table.texts) > current.max_support_texts:
                raise UserInputError(f"{name} has {len(table.texts)} support texts; this app takes at most "
                                     f"{current.max_support_texts}. Keep a sample of each class")
            notes += table.notes
            for text, label in zip(table.texts, table.labels):
                classes.setdefault(label, []).append(text)
        added = [label for label in classes if label not in {entry["name"] for entry in entries}]
        if added:
            notes.append(f"{SUPPORT_CSV} names classes the manifest does not list, added last: {', '.join(added)}.")
        _check_names(list(classes), name)
        queries = _query_texts(root / QUERY_CSV, name)
        return list(classes.items()), queries, notes


def _image_files(folder: Path) -> list[Path]:
    """The image files of a folder, sorted (their numbers keep the row order); none when it is missing."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _query_texts(path: Path, name: str) -> list[str]:
    if not path.is_file():
        return []
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error):
        raise UserInputError(f"{name}: {QUERY_CSV} is not UTF-8 CSV text; {SAVE_AGAIN}") from None
    texts = [clean_text(row[0]).strip() for row in rows[1:] if row and clean_text(row[0]).strip()]
    if len(texts) > limits().max_query_texts:
        raise UserInputError(f"{name} has {len(texts)} query texts; this app takes at most {limits().max_query_texts}")
    return texts


LAYOUTS: dict[str, _Layout] = {"image": _ImageLayout(), "text": _TextLayout()}


# ------------------------------------------------------------------------------------------ write
def write_project(project: Project, path: str | Path) -> Path:
    """Write ``project`` as one zip (see the module docstring); return its path.

    Raises:
        UserInputError: for bad class names, an unknown method or encoder, options that are not JSON
            values, or an item that is not an image (image projects).
    """
    path = Path(path)
    modality = _checked_modality(project.modality, "the project")
    _check_names([class_name for class_name, _ in project.classes], "the project")
    _check_setup(modality, project.method, project.options, project.encoder_id, "the project")
    partial = path.with_name(path.name + ".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        entries = LAYOUTS[modality].write(archive, project)
        manifest = {
            "format": PROJECT_FORMAT, "version": PROJECT_VERSION, "modality": modality, "classes": entries,
            "method": project.method, "options": dict(project.options), "encoder": project.encoder_id,
            "queries": len(project.queries), "app_version": __version__,
            "created": project.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
    return partial.replace(path)


# ------------------------------------------------------------------------------------------ read
def _manifest_root(root: Path) -> Path | None:
    """The folder holding the manifest: the zip's top, or the one folder at its top; None without one."""
    if (root / MANIFEST).is_file():
        return root
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
    return folders[0] if len(folders) == 1 and (folders[0] / MANIFEST).is_file() else None


def read_manifest(path: Path, name: str) -> dict[str, Any]:
    """The checked manifest of an unpacked project.

    Raises:
        UserInputError: for a file that is too large or not JSON, another format, a newer version,
            bad classes, an unknown method or encoder.
    """
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise UserInputError(f"{name}: {MANIFEST} is larger than {MAX_MANIFEST_BYTES // 2**20} MB; {SAVE_AGAIN}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserInputError(f"{name}: {MANIFEST} is not valid JSON; {SAVE_AGAIN}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PROJECT_FORMAT:
        raise UserInputError(f"{name} holds a {MANIFEST} of another program, not a fewshot-demo project; "
                             f"pick a project saved with Save project")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserInputError(f"{name}: its project format version {str(version)[:20]!r} is not a number; {SAVE_AGAIN}")
    if version > PROJECT_VERSION:
        raise UserInputError(
            f"{name} was saved by a newer fewshot-demo ({manifest.get('app_version', '?')}, project format {version}); "
            f"this app ({__version__}) reads format {PROJECT_VERSION}. Update the app to open it")
    modality = _checked_modality(manifest.get("modality"), name)
    entries = manifest.get("classes")
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise UserInputError(f"{name}: {MANIFEST} lists no classes; {SAVE_AGAIN}")
    _check_names([entry.get("name") for entry in entries], name)
    manifest.setdefault("options", {})
    manifest.setdefault("encoder", default_encoder(modality))
    _check_setup(modality, manifest.get("method"), manifest["options"], manifest["encoder"], name)
    return manifest


def _from_folders(root: Path, name: str) -> Project:
    """A zip of class folders without a manifest, as an image project at the defaults."""
    try:
        listing = read_zip_folder(root, name)
    except UserInputError:
        raise UserInputError(f"{name} is neither a project (it has no {MANIFEST}) nor a zip of class folders of "
                             "images; open a file saved with Save project, or zip one folder per class") from None
    classes: dict[str, list[Path]] = {}
    for file, label in zip(listing.paths, listing.labels):
        classes.setdefault(label, []).append(file)
    _check_names(list(classes), name)
    note = f"{name} has no {MANIFEST}: read as a zip of class folders, with the default method."
    return Project("image", list(classes.items()), default_method("image"), notes=(note,))


@contextlib.contextmanager
def open_upload(path: str | Path, name: str | None = None) -> Iterator[Project]:
    """Open a project file (or a zip of class folders without a manifest); its files are removed when
    the block ends (``Project.copied_to`` keeps them).

    Raises:
        UserInputError: for a file that is not a zip, too large, damaged, unsafe, foreign, of a newer
            format, or over the limits; nothing is returned before the whole file is checked.
    """
    path = Path(path)
    name = name or path.name
    if path.suffix.lower() != ".zip":
        raise UserInputError(f"{name} is not a project file; open a .zip saved with Save project")
    current = limits()
    check_file_sizes([path], current.max_upload_mb)
    most = current.max_classes * current.max_images_per_class + current.max_query_images
    with unpacked_zip(path, name, max_files=most, again="save the project again (or zip class folders)") as unpacked:
        root = _manifest_root(unpacked)
        if root is None:
            yield _from_folders(unpacked, name)
            return
        manifest = read_manifest(root / MANIFEST, name)
        modality = manifest["modality"]
        classes, queries, notes = LAYOUTS[modality].read(root, manifest["classes"], name)
        yield Project(modality, classes, manifest["method"], dict(manifest["options"]), manifest["encoder"], queries,
                      str(manifest.get("app_version", "")), str(manifest.get("created", "")), tuple(notes))


def is_zip(path: Any) -> bool:
    """True for a path to an existing .zip file (what ``open_upload`` reads)."""
    return isinstance(path, (str, Path)) and Path(path).suffix.lower() == ".zip" and Path(path).is_file()


def labelled_from_upload(path: str | Path, name: str | None = None) -> LoadedData:
    """An upload as labelled data for a comparison: a project's support set, a zip of class folders, or
    a CSV/TSV/JSONL table (``data.zips.data_from_upload``)."""
    if not is_zip(path):
        return data_from_upload(path, name)
    with open_upload(path, name) as project:
        items, labels = project.labelled
        data = data_from_items(project.modality, items, labels)
    return replace(data, notes=(*project.notes, *data.notes))
