"""The text tab's bundled example sets (``examples/text/<set>/support.csv`` and ``queries.txt``)."""

from __future__ import annotations

from pathlib import Path

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data.texts import read_text_table, split_lines

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "text"


def list_example_sets() -> list[str]:
    """Names of the bundled example sets (folders with a support.csv)."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "support.csv").is_file())


def example_set(name: str) -> tuple[list[tuple[str, str]], str]:
    """Return ([(class name, examples one per line)], queries one per line) of a bundled set."""
    if name not in list_example_sets():
        raise UserInputError(f"unknown example set {name!r}; choose one of {', '.join(list_example_sets())}")
    table = read_text_table(EXAMPLES_DIR / name / "support.csv")
    queries_file = EXAMPLES_DIR / name / "queries.txt"
    queries = queries_file.read_text(encoding="utf-8") if queries_file.is_file() else ""
    return class_blocks(table.texts, table.labels), "\n".join(split_lines(queries))


def class_blocks(texts: list[str], labels: list[str]) -> list[tuple[str, str]]:
    """Group texts by label into (name, one text per line) blocks; line breaks inside a text become spaces."""
    blocks: dict[str, list[str]] = {}
    for text, label in zip(texts, labels):
        blocks.setdefault(label, []).append(" ".join(text.split()))
    return [(name, "\n".join(lines)) for name, lines in blocks.items()]


def example_caption(name: str) -> str:
    """What an example card says, most telling first: the set, its classes, examples per class."""
    blocks, queries = example_set(name)
    counts = sorted({len(block.splitlines()) for _, block in blocks})
    per_class = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{name}: {len(blocks)} classes x {per_class} examples, {len(queries.splitlines())} queries ({', '.join(n for n, _ in blocks)})"
