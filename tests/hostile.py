"""Hostile files for the bad-input and fuzz tests: bombs, broken images, damaged zips, odd tables."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image


def png(color: str = "red", size: tuple[int, int] = (8, 8), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color if mode != "RGBA" else (255, 0, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(size: tuple[int, int] = (16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "green").save(buffer, format="JPEG")
    return buffer.getvalue()


def gif(frames: int = 2) -> bytes:
    buffer = io.BytesIO()
    first, *rest = [Image.new("P", (8, 8), i) for i in range(frames)]
    first.save(buffer, format="GIF", save_all=True, append_images=rest)
    return buffer.getvalue()


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid PNG header announcing width x height 1-bit pixels, with a tiny compressed body:
    about a kilobyte on disk, 900 megapixels once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 64, 9)  # far too little data: the decoder would fail, if it were reached
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def class_zip() -> bytes:
    """Two classes of two small images each, in one top folder."""
    return zip_bytes({"set/a/1.png": png("red"), "set/a/2.png": png("orange"),
                      "set/b/1.png": png("blue"), "set/b/2.png": png("navy")})


def with_central_directory(data: bytes, offset: int, value: bytes) -> bytes:
    """``data`` with ``value`` written at ``offset`` of every central-directory header."""
    patched = bytearray(data)
    start = 0
    while (found := patched.find(b"PK\x01\x02", start)) >= 0:
        patched[found + offset : found + offset + len(value)] = value
        start = found + 4
    return bytes(patched)


def encrypted_zip() -> bytes:
    return with_central_directory(class_zip(), 8, b"\x01\x00")  # general-purpose flag bit 0: encrypted


def unknown_method_zip() -> bytes:
    return with_central_directory(class_zip(), 10, (99).to_bytes(2, "little"))


def corrupt_zip() -> bytes:
    data = bytearray(zip_bytes({"set/a/1.png": png() * 20, "set/b/1.png": png("blue") * 20}))
    data[60] ^= 0xFF
    return bytes(data)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path
