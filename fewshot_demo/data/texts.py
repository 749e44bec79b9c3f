"""Labelled texts in and out: user files (CSV, TSV, JSONL), the class boxes of the UI, and the two
installed benchmark corpora (BBC News and chatterbot topics).

Everything that reaches a learner goes through the same cleaning, and everything the cleaning does
is reported as a note, never done silently: blank texts and rows without a label are skipped,
exact duplicates are merged, and a text listed under two labels is left out (it cannot teach
either). Unusable input raises ``ValueError`` with the fix in the message.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from fewshot_demo.config.errors import UserInputError

logger = logging.getLogger(__name__)

TEXT_FILE_EXTENSIONS = (".csv", ".tsv", ".jsonl")
#: More classes than this still work, but the UI's map and tables get hard to read.
MANY_CLASSES = 50


@dataclass(frozen=True)
class TextTable:
    """Cleaned labelled texts.

    Attributes:
        texts: the texts, stripped of surrounding whitespace, none empty.
        labels: one class name per text.
        notes: what the cleaning did, in sentences for the user.
    """

    texts: list[str]
    labels: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        """Distinct labels in order of first appearance."""
        return list(dict.fromkeys(self.labels))

    def counts(self) -> dict[str, int]:
        """Return {class name: number of texts}."""
        return dict(Counter(self.labels))


def clean_text(value: object) -> str:
    """``str(value)`` that every encoder can read: a lone UTF-16 surrogate (JSON allows "\\ud800",
    no UTF-8 text can hold it) becomes U+FFFD; a surrogate pair becomes the character it encodes."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _quote(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def clean_pairs(pairs: Iterable[tuple[str, str]], where: str = "row") -> TextTable:
    """Clean (text, label) pairs: strip, skip blanks, merge duplicates, drop contradictions.

    Args:
        pairs: (text, label) in input order.
        where: what one pair is called in notes ("row", "line").
    """
    notes: list[str] = []
    blank_text = blank_label = 0
    seen: dict[str, list[str]] = defaultdict(list)  # text -> labels, in order
    order: list[str] = []
    duplicates = 0
    for text, label in pairs:
        text, label = clean_text(text).strip(), " ".join(clean_text(label).split())
        if not text:
            blank_text += 1
            continue
        if not label:
            blank_label += 1
            continue
        if text not in seen:
            order.append(text)
        if label in seen[text]:
            duplicates += 1
            continue
        seen[text].append(label)
    if blank_text:
        notes.append(f"Skipped {blank_text} {where}{'s' if blank_text > 1 else ''} with an empty text.")
    if blank_label:
        notes.append(f"Skipped {blank_label} {where}{'s' if blank_label > 1 else ''} with no label.")
    if duplicates:
        notes.append(f"Merged {duplicates} exact duplicate{'s' if duplicates > 1 else ''} (same text, same label).")
    conflicting = [text for text in order if len(seen[text]) > 1]
    if conflicting:
        shown = "; ".join(f"{_quote(text)} ({', '.join(seen[text])})" for text in conflicting[:3])
        more = f" and {len(conflicting) - 3} more" if len(conflicting) > 3 else ""
        notes.append(
            f"Left out {len(conflicting)} text{'s' if len(conflicting) > 1 else ''} listed under more than "
            f"one label: {shown}{more}. Keep each text under one label."
        )
    kept = [text for text in order if len(seen[text]) == 1]
    return TextTable(texts=kept, labels=[seen[text][0] for text in kept], notes=notes)


def decode_text_file(data: bytes, name: str = "the file") -> str:
    """Decode UTF-8 bytes (a byte-order mark is allowed).

    Raises:
        UserInputError: when the bytes are not UTF-8 text, saying where and how to fix it.
    """
    if b"\x00" in data[:4096]:
        raise UserInputError(
            f"{name} looks like a binary file (or UTF-16 text); save it as UTF-8 CSV, TSV or JSONL"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserInputError(
            f"{name} is not UTF-8 text (undecodable byte 0x{data[error.start]:02x} on line {line}); "
            "save it as UTF-8 (in a spreadsheet: 'CSV UTF-8') and upload it again"
        ) from None


def _find_columns(header: Sequence[str], name: str) -> tuple[int, int]:
    lowered = [str(column).strip().lower() for column in header]
    if "text" in lowered and "label" in lowered:
        return lowered.index("text"), lowered.index("label")
    found = ", ".join(repr(str(column).strip()) for column in header[:10]) or "none"
    raise UserInputError(
        f"{name} needs a header row with columns 'text' and 'label'; found {found}. "
        "Rename the columns (one text and its class name per row) and upload it again."
    )


def _read_delimited(content: str, delimiter: str, name: str) -> list[tuple[str, str]]:
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise UserInputError(f"{name} is empty; it needs a header row 'text{delimiter}label' and one row per example")
        text_column, label_column = _find_columns(header, name)
        pairs = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank line
            cell = lambda i: row[i] if i < len(row) else ""  # noqa: E731 - short rows have blanks
            pairs.append((cell(text_column), cell(label_column)))
    except csv.Error as error:
        raise UserInputError(f"{name} could not be read as {'TSV' if delimiter == chr(9) else 'CSV'} "
                         f"near line {reader.line_num}: {error}") from None
    return pairs


def _read_jsonl(content: str, name: str) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError, ValueError) as error:  # nesting too deep; a huge number
            reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply or too long a number"
            raise UserInputError(f"line {number} of {name} is not valid JSON ({reason}); "
                             "JSONL needs one object per line, like {\"text\": \"...\", \"label\": \"...\"}") from None
        if not isinstance(record, dict):
            raise UserInputError(f"line {number} of {name} is not a JSON object; expected {{\"text\": ..., \"label\": ...}}")
        keys = {str(key).strip().lower(): key for key in record}
        if "text" not in keys or "label" not in keys:
            raise UserInputError(
                f"line {number} of {name} has keys {sorted(record)[:10]}; each line needs 'text' and 'label'"
            )
        text, label = record[keys["text"]], record[keys["label"]]
        for key, value in (("text", text), ("label", label)):
            if isinstance(value, (dict, list)):
                kind = "an object" if isinstance(value, dict) else "an array"
                raise UserInputError(f"line {number} of {name}: {key!r} is {kind}; give it as a string, "
                                     f"like {{\"{key}\": \"...\"}}")
        pairs.append(("" if text is None else str(text), "" if label is None else str(label)))
    return pairs


def read_text_table(source: str | Path | bytes, name: str | None = None) -> TextTable:
    """Read and clean a CSV, TSV or JSONL file of labelled texts.

    Args:
        source: a path, or the file's bytes (then ``name`` gives the extension).
        name: the file name, used for the format and in messages.

    Returns:
        The cleaned table; its notes say what was skipped or merged.

    Raises:
        UserInputError: for an unknown extension, non-UTF-8 bytes, missing columns, or no usable rows.
    """
    if isinstance(source, bytes):
        data, name = source, name or "the file"
    else:
        path = Path(source)
        name = name or path.name
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UserInputError(f"cannot read {path}: {error.strerror or error}") from None
    suffix = Path(name).suffix.lower()
    if suffix not in TEXT_FILE_EXTENSIONS:
        raise UserInputError(f"{name}: use a .csv, .tsv or .jsonl file with 'text' and 'label' columns")
    content = decode_text_file(data, name)
    if suffix == ".jsonl":
        pairs = _read_jsonl(content, name)
    else:
        pairs = _read_delimited(content, "\t" if suffix == ".tsv" else ",", name)
    table = clean_pairs(pairs, where="row")
    if not table.texts:
        raise UserInputError(f"{name} has no row with both a text and a label")
    return table


def load_text_dataset(path: str | Path) -> tuple[list[str], list[str]]:
    """Load a labelled text file for the bench command: (texts, labels).

    The cleaning notes are logged as warnings. See ``read_text_table`` for formats and errors.
    """
    table = read_text_table(path)
    for note in table.notes:
        logger.warning("%s: %s", Path(path).name, note)
    return table.texts, table.labels


def split_lines(block: str | None) -> list[str]:
    """Split a text box into its non-blank lines, stripped (one example or query per line)."""
    return [line.strip() for line in clean_text(block or "").splitlines() if line.strip()]


def table_from_class_boxes(classes: Sequence[tuple[str | None, str | None]]) -> TextTable:
    """Build a support table from (class name, examples one per line) pairs, as typed in the UI.

    Rows with neither a name nor examples are ignored.

    Raises:
        UserInputError: for examples without a class name, or a named class with no example text.
    """
    pairs = []
    for position, (name, block) in enumerate(classes, start=1):
        name = " ".join(clean_text(name or "").split())
        lines = split_lines(block)
        if not name and not lines:
            continue
        if not name:
            raise UserInputError(f"class {position} has examples but no name; give it a name")
        if not lines:
            raise UserInputError(f"class {name!r} has no example text; add at least one example, one per line")
        pairs.extend((line, name) for line in lines)
    return clean_pairs(pairs, where="line")


def check_classes(table: TextTable) -> None:
    """Raise ``ValueError`` unless the table has at least two classes with texts."""
    names = table.class_names
    if not names:
        raise UserInputError("there are no example texts yet; add at least two classes with one example each")
    if len(names) < 2:
        raise UserInputError(
            f"only one class ({names[0]!r}) has examples; a classifier needs at least two classes"
        )
