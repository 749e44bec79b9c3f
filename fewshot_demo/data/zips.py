"""Uploads: a zip of class folders (images) or a CSV/TSV/JSONL of ``text,label``, read safely.

    data = data_from_upload("animals.zip")                # LoadedData, images kept small
    with zip_classes("animals.zip") as classes:           # {class name: image files}, within the limits
        ...

A zip is checked from its directory before anything is decompressed (size, file count, paths,
encryption, compression method), then unpacked into a temporary folder that is removed when the
block ends, counting the bytes really written.
"""

from __future__ import annotations

import contextlib
import lzma
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from fewshot_demo.config.checks import check_count
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.data.image_folder import IMAGE_SUFFIXES, list_image_folder
from fewshot_demo.data.labelled import (
    MAX_IMAGE_SIDE,
    LoadedData,
    read_image_folder,
    read_text_file,
)

#: Largest uploaded zip we unpack (uncompressed bytes) and the most files in it.
MAX_ZIP_BYTES = 300 * 2**20
MAX_ZIP_FILES = 5000
#: The manifest of a project file (``core.project``): such a zip is not a plain zip of class folders.
PROJECT_MANIFEST = "fewshot-project.json"
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
                  max_bytes: int = MAX_ZIP_BYTES, again: str | None = None) -> None:
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
            raise UserInputError(f"{name} is damaged ({reason}); {again or 'zip the class folders again'} and upload "
                                 "the new file") from None


@contextlib.contextmanager
def unpacked_zip(path: str | Path, name: str | None = None, max_files: int = MAX_ZIP_FILES,
                 max_bytes: int = MAX_ZIP_BYTES, again: str | None = None) -> Iterator[Path]:
    """Unpack a zip of class folders into a temporary folder, removed when the block ends.

    Yields the folder that holds the class folders: the zip's top, or the one folder at its top.

    Args:
        path: the zip file.
        name: what messages call it (default: its file name; never its folder).
        max_files: most image files it may hold.
        max_bytes: most bytes it may unpack to.
        again: how a damaged file is made again, for its message ("save the project again").

    Raises:
        UserInputError: for a file that is not a zip, or a damaged, encrypted, unsafe or oversized one.
    """
    path = Path(path)
    name = name or path.name
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        again = again or "zip a folder of class sub-folders again"
        raise UserInputError(f"{name} is not a valid zip file; {again}") from None
    with tempfile.TemporaryDirectory(prefix="fewshot-unzip-") as folder, archive:
        target = Path(folder)
        _safe_extract(archive, target, name, max_files, max_bytes, again)
        root = target
        entries = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        if len(entries) == 1 and entries[0].is_dir() and not any(f.is_file() for f in entries[0].iterdir()):
            root = entries[0]  # the zip holds one folder that holds the class folders
        yield root


def read_zip_folder(root: Path, name: str, **kwargs: Any) -> Any:
    """``list_image_folder`` or ``read_image_folder`` (by ``kwargs``) on an unpacked zip, with messages
    that name the zip, not the temporary folder.

    Raises:
        UserInputError: for no images in class folders, or a project file (its folders are not classes).
    """
    if (root / PROJECT_MANIFEST).is_file():
        raise UserInputError(f"{name} is a project file: open it with Open project, or fit on it with fsd.fit, "
                             "/fit_images or /fit_texts (then /predict with the handle)")
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
