"""Reading text support sets and queries: the text side of the path to a classifier, without any UI.

Texts are cleaned, checked against the limits and cut to ``limits().max_text_chars``, with notes on
what was cut (here and by the encoder's windows). ``TextReader`` is the text modality's
``core.support.SupportReader``; fitting and classifying are ``FewShotClassifier``'s one path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core.class_names import check_class_names
from fewshot_demo.core.classifier import FewShotClassifier, Prediction
from fewshot_demo.core.support import Support
from fewshot_demo.data.texts import (
    TextTable,
    check_classes,
    clean_pairs,
    split_lines,
    table_from_class_boxes,
)
from fewshot_demo.encoders.text import TextEncoder
from fewshot_demo.methods.text_tuning import ProgressCallback


def build_text_support(classes: Sequence[tuple[str | None, str | None]]) -> TextTable:
    """Check a support set typed as (class name, examples one per line) pairs.

    Raises:
        UserInputError: examples without a class name, a named class without examples, fewer than two
            classes, or more than ``limits().max_classes``.
    """
    table = table_from_class_boxes(classes)
    return _checked(table)


def _checked(table: TextTable) -> TextTable:
    check_classes(table)
    names = table.class_names
    current = limits()
    if len(names) > current.max_classes:
        raise UserInputError(
            f"{len(names)} classes is more than the {current.max_classes} this app fits at once; keep the "
            f"{current.max_classes} you need most (the bench command handles any number of classes)"
        )
    check_class_names(names)
    if len(table.texts) > current.max_support_texts:
        raise UserInputError(
            f"{len(table.texts)} example texts; the app fits at most {current.max_support_texts} at once (few-shot needs "
            "5-20 per class). Keep a sample per class, or run the bench command on the whole file"
        )
    counts = table.counts()
    notes = list(table.notes)
    if len(set(counts.values())) > 1:
        shots = ", ".join(f"{name}: {count}" for name, count in counts.items())
        notes.append(f"Classes have different numbers of examples ({shots}); that works, but balanced classes are fairer.")
    return TextTable(texts=table.texts, labels=table.labels, notes=notes)


def _clip(texts: Sequence[str], encoder: TextEncoder, what: str) -> tuple[list[str], list[str]]:
    """Cut texts to ``limits().max_text_chars``; return them with notes on what was cut (here and by the encoder).

    The cut comes before tokenising: the encoder reads far fewer tokens anyway, and a pasted book
    would otherwise stall the tokenizer.
    """
    limit = limits().max_text_chars
    clipped = [text[:limit] for text in texts]
    count = sum(len(text) > limit for text in texts)
    notes = [f"{count} {what} text(s) longer than {limit} characters were cut to that length."] if count else []
    truncation = encoder.truncation_note(clipped, what=what)
    return clipped, notes + ([truncation] if truncation else [])


def support_fingerprint(table: TextTable, encoder_id: str, method: str, options: dict[str, Any]) -> str:
    """A key that changes whenever the fitted classifier would: reuse the fit when it does not."""
    payload = json.dumps([table.texts, table.labels, encoder_id, method, options], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8", errors="surrogatepass")).hexdigest()


def _labelled(table: TextTable, encoder: TextEncoder) -> tuple[TextTable, list[str], Tensor, list[str]]:
    """(the checked table, its clipped texts, their labels, notes on what was cut)."""
    table = _checked(table)
    texts, notes = _clip(table.texts, encoder, "example")
    index = {name: i for i, name in enumerate(table.class_names)}
    labels = torch.tensor([index[label] for label in table.labels], dtype=torch.long)
    return table, texts, labels, notes


def fit_text_classifier(
    table: TextTable,
    encoder: TextEncoder,
    method: str,
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[FewShotClassifier, list[str]]:
    """Embed the support texts (cached by text) and fit the named method.

    Args:
        table: the support set.
        encoder: the text encoder.
        method: a registered method that runs on text (``methods_for("text", encoder.id)``).
        options: the method's options (e.g. ``steps`` for finetune).
        progress: ``(fraction, message)`` callback for the fine-tune.

    Returns:
        (classifier, notes): notes say what was cut, or that the classes are unbalanced.
    """
    table, texts, labels, notes = _labelled(table, encoder)
    return FewShotClassifier.fit(encoder, table.class_names, texts, labels, method, options, progress), notes


def parse_queries(block: str | None) -> list[str]:
    """One query per non-blank line.

    Raises:
        UserInputError: when there is none, or more than ``limits().max_query_texts``.
    """
    queries = split_lines(block)
    if not queries:
        raise UserInputError("type at least one query text (one per line), then press Classify")
    limit = limits().max_query_texts
    if len(queries) > limit:
        raise UserInputError(f"{len(queries)} queries; at most {limit} at once, split them into batches")
    return queries


def classify_texts(
    classifier: FewShotClassifier, encoder: TextEncoder, queries: Sequence[str]
) -> tuple[list[Prediction], list[str]]:
    """Embed (and, for a token learner, tokenise) the queries and classify them; return (predictions, notes)."""
    texts, notes = _clip(queries, encoder, "query")
    return classifier.classify(encoder, texts), notes


class TextReader:
    """The text modality's support reader: items are strings, cleaned and cut to the length limit."""

    modality = "text"

    def support(self, classes: Mapping[str, Sequence[Any]], encoder: TextEncoder) -> Support:
        pairs = ((str(text), name) for name, texts in classes.items() for text in texts)
        table, texts, labels, notes = _labelled(clean_pairs(pairs, where="example"), encoder)
        return Support(table.class_names, texts, labels, list(table.texts), list(table.notes) + notes)

    def queries(self, queries: Sequence[Any], encoder: TextEncoder) -> tuple[list[str], list[str]]:
        return _clip([str(query) for query in queries], encoder, "query")


def load_text_classifier(path: str | Path, encoder_id: str | None = None) -> FewShotClassifier:
    """Read and validate a saved text classifier (see ``FewShotClassifier.load``)."""
    return FewShotClassifier.load(path, expected_encoder_id=encoder_id)
