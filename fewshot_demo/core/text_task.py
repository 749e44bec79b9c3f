"""From typed or uploaded texts to a fitted text classifier: the text tab's logic, without any UI.

The fitted classifier is the modality-agnostic ``FewShotClassifier`` over frozen sentence embeddings
(explanations, self-check, 2-D map and the safetensors file all come from it). A learner that
consumes another input kind (``finetune`` reads tokens) gets them from ``encoder.prepare``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.limits import Limits
from fewshot_demo.config.settings import limits
from fewshot_demo.core.classifier import (
    FewShotClassifier,
    Prediction,
    check_class_names,
)
from fewshot_demo.data.texts import (
    TextTable,
    check_classes,
    split_lines,
    table_from_class_boxes,
)
from fewshot_demo.encoders.text import TextEncoder
from fewshot_demo.methods import get_method
from fewshot_demo.methods.text_tuning import ProgressCallback

#: The defaults of the limits in force (``limits()``): query texts in one call; support texts (the
#: app embeds the whole support set on each new fit; past this it stops being interactive); and the
#: characters of a text that are read: longer texts are cut before tokenising (the encoder reads far
#: fewer tokens anyway), which keeps a pasted book from stalling the tokenizer.
MAX_QUERIES = Limits.max_query_texts
MAX_SUPPORT_TEXTS = Limits.max_support_texts
MAX_TEXT_CHARS = Limits.max_text_chars


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
    """Cut texts to ``limits().max_text_chars``; return them with notes on what was cut (here and by the encoder)."""
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


def fit_text_classifier(
    table: TextTable,
    encoder: TextEncoder,
    method: str,
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[FewShotClassifier, list[str]]:
    """Embed the support texts (cached by text) and fit the named method.

    Args:
        table: the checked support set.
        encoder: the text encoder.
        method: a registered method that runs on text (``methods_for("text", encoder.id)``).
        options: keyword arguments for the learner factory (e.g. ``steps`` for finetune).
        progress: ``(fraction, message)`` callback for the fine-tune.

    Returns:
        (classifier, notes): notes say what was truncated.
    """
    table = _checked(table)
    texts, notes = _clip(table.texts, encoder, "example")
    class_names = table.class_names
    index = {name: i for i, name in enumerate(class_names)}
    labels = torch.tensor([index[label] for label in table.labels], dtype=torch.long)
    features = encoder.embed(texts)  # (n_support, d)
    kind = get_method(method).input_kind("text")
    inputs = None if kind == "features" else encoder.prepare(kind, texts)
    classifier = FewShotClassifier(
        method, class_names, features, labels, encoder.id, learner_options=dict(options or {}),
        support_inputs=inputs, progress=progress,
    )
    return classifier, notes


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
    if classifier.encoder_id != encoder.id:
        raise UserInputError(
            f"this classifier was fitted on {classifier.encoder_id!r} embeddings but {encoder.id!r} is selected; "
            "fit again or select the matching encoder"
        )
    texts, notes = _clip(queries, encoder, "query")
    features = encoder.embed(texts)
    inputs = None if classifier.consumes_features else encoder.prepare(classifier.input_kind, texts)
    return classifier.predict(features, query_inputs=inputs), notes


def load_text_classifier(path: str | Path, encoder_id: str | None = None) -> FewShotClassifier:
    """Read and validate a saved text classifier (see ``FewShotClassifier.load``)."""
    return FewShotClassifier.load(path, expected_encoder_id=encoder_id)
