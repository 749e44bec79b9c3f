"""Fuzzing the three readers of untrusted bytes: whatever they are given, they return a result or
raise one of the documented ``ValueError`` subclasses, never anything else.

Inputs are random bytes and small random edits (flipped, cut, inserted bytes) of valid files, so
the readers' deeper paths (headers that parse, bodies that do not) are reached. Derandomized:
every run draws the same examples.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hostile import class_zip, gif, jpeg, png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data import zips
from fewshot_demo.data.images import load_image
from fewshot_demo.data.texts import read_text_table

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def edited(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid file with a few random edits: bytes flipped, the end cut, or bytes inserted."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[position:]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


IMAGE_SEEDS = [png(), png(mode="RGBA"), png(size=(3, 300)), jpeg(), gif()]


@FUZZ
@given(st.one_of(st.binary(max_size=512), edited(IMAGE_SEEDS)))
def test_the_image_loader_reads_or_refuses_any_bytes(data):
    try:
        image = load_image(data)
    except UserInputError:
        return
    assert image.mode == "RGB" and image.width * image.height > 0


cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
rows = st.lists(st.tuples(cells, cells), max_size=8)


@st.composite
def tables(draw: st.DrawFn) -> tuple[bytes, str]:
    """A CSV, TSV or JSONL file: well-formed rows with odd contents, random bytes, or an edited one."""
    suffix = draw(st.sampled_from([".csv", ".tsv", ".jsonl"]))
    pairs = draw(rows)
    if suffix == ".jsonl":
        lines = [json.dumps({"text": t, "label": label}) for t, label in pairs]
        lines += draw(st.lists(st.sampled_from(['{"text": "\\ud800", "label": "x"}', "[1, 2]", "{", '{"text": 1}',
                                                 '{"TEXT": null, "Label": null}']), max_size=2))
        content = "\n".join(lines).encode()
    else:
        separator = "\t" if suffix == ".tsv" else ","
        header = draw(st.sampled_from([f"text{separator}label", f"label{separator}text", "words", ""]))
        content = "\n".join([header, *(f'"{t}"{separator}{label}' for t, label in pairs)]).encode()
    kind = draw(st.sampled_from(["as is", "random", "edited"]))
    if kind == "random":
        content = draw(st.binary(max_size=200))
    elif kind == "edited" and content:
        content = draw(edited([content]))
    return content, f"table{suffix}"


@FUZZ
@given(tables())
def test_the_text_table_reader_reads_or_refuses_any_file(table):
    content, name = table
    try:
        read = read_text_table(content, name=name)
    except ValueError as error:  # read_text_table documents ValueError with the fix
        assert str(error)
        return
    assert read.texts and len(read.texts) == len(read.labels)
    for text in read.texts + read.labels:
        text.encode("utf-8")  # no lone surrogate survives


ZIP_SEEDS = [class_zip()]


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="fuzz-zips-") as folder:
        yield Path(folder)


@FUZZ
@given(st.one_of(st.binary(max_size=300), edited(ZIP_SEEDS)))
def test_the_zip_reader_reads_or_refuses_any_archive(scratch, data):
    archive = scratch / "upload.zip"
    archive.write_bytes(data)
    try:
        loaded = zips.data_from_upload(archive)
    except UserInputError as error:
        assert str(scratch) not in str(error)  # never the server's folder
        return
    except ValueError as error:  # LoadedData: fewer than two classes survived
        assert "at least 2 classes" in str(error)
        return
    assert loaded.modality == "image" and len(loaded.items) == len(loaded.labels)
