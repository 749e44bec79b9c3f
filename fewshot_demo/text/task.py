"""From typed or uploaded texts to a fitted text classifier: the text tab's logic, without any UI.

The fitted classifier is the modality-agnostic ``FewShotClassifier`` over frozen sentence embeddings
(explanations, self-check, 2-D map and the safetensors file all come from it). The one text-specific
part is the ``finetune`` learner, which consumes token tensors instead of embeddings: for it,
``TextClassifier`` takes the probabilities from the fine-tuned encoder and keeps the explanations
(nearest examples, distances) on the frozen embeddings, where they are comparable across methods.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from fewshot_demo.classifier import MAX_CLASSES, FewShotClassifier, Prediction, check_class_names
from fewshot_demo.methods import make_learner
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.text.data import TextTable, check_classes, split_lines, table_from_class_boxes
from fewshot_demo.text.encoders import TextEncoder
from fewshot_demo.text.finetune import ProgressCallback

MAX_QUERIES = 200
#: The app embeds the whole support set on each new fit; past this it stops being interactive.
MAX_SUPPORT_TEXTS = 1000
#: Longer texts are cut to this many characters before tokenising (the encoder reads far fewer tokens
#: anyway); it keeps a pasted book from stalling the tokenizer.
MAX_TEXT_CHARS = 20_000
TEXT_METHODS = ("linear", "protonet", "finetune")
#: Stand-in used for the leave-one-out self-check when the method fine-tunes the encoder (refitting
#: the encoder once per support text would take minutes).
SELF_CHECK_STAND_IN = "linear"


class TextClassifier(FewShotClassifier):
    """``FewShotClassifier`` that also serves learners whose inputs are tokens, not embeddings.

    For a feature learner it behaves exactly like its base class. For a token learner (``finetune``):
    ``predict`` needs the query tokens too, its probabilities come from the fine-tuned encoder and its
    explanations from the frozen embeddings, and the self-check uses ``SELF_CHECK_STAND_IN`` on the
    frozen embeddings (``self_check_method`` says which method was checked).
    """

    @property
    def consumes_features(self) -> bool:
        return self.learner.input_kind == "features"

    @property
    def self_check_method(self) -> str:
        return self.method if self.consumes_features else SELF_CHECK_STAND_IN

    def _new_learner(self) -> FewShotLearner:
        fitted = getattr(self, "learner", None)  # None while the base class is fitting a feature learner
        if fitted is not None and fitted.input_kind != "features":
            return make_learner(SELF_CHECK_STAND_IN, self.context)
        return super()._new_learner()

    def predict(self, query_features: Tensor, n_nearest: int = 3, query_tokens: Tensor | None = None) -> list[Prediction]:
        """Classify queries; ``query_tokens`` (n_query, 2, seq_len) is required for a token learner."""
        if self.consumes_features:
            return super().predict(query_features, n_nearest)
        if query_tokens is None or len(query_tokens) != len(query_features):
            raise ValueError(f"the {self.method} classifier needs the query tokens as well as the embeddings")
        probabilities = self.learner.predict_proba(query_tokens)  # (n_query, n_way)
        tuned, self.learner = self.learner, make_learner("protonet", self.context).fit(
            self.support_features, self.support_labels
        )
        try:  # distances and nearest examples on the frozen embeddings
            predictions = super().predict(query_features, n_nearest)
        finally:
            self.learner = tuned
        for prediction, row in zip(predictions, probabilities.tolist()):
            prediction.probabilities = dict(zip(self.class_names, row))
            prediction.label = self.class_names[max(range(len(row)), key=row.__getitem__)]
        return predictions


def build_text_support(classes: Sequence[tuple[str | None, str | None]]) -> TextTable:
    """Check a support set typed as (class name, examples one per line) pairs.

    Raises:
        ValueError: examples without a class name, a named class without examples, fewer than two
            classes, or more than ``MAX_CLASSES``.
    """
    table = table_from_class_boxes(classes)
    return _checked(table)


def _checked(table: TextTable) -> TextTable:
    check_classes(table)
    names = table.class_names
    if len(names) > MAX_CLASSES:
        raise ValueError(
            f"{len(names)} classes is more than the {MAX_CLASSES} this app fits at once; keep the "
            f"{MAX_CLASSES} you need most (the bench command handles any number of classes)"
        )
    check_class_names(names)
    if len(table.texts) > MAX_SUPPORT_TEXTS:
        raise ValueError(
            f"{len(table.texts)} example texts; the app fits at most {MAX_SUPPORT_TEXTS} at once (few-shot needs "
            "5-20 per class). Keep a sample per class, or run the bench command on the whole file"
        )
    counts = table.counts()
    notes = list(table.notes)
    if len(set(counts.values())) > 1:
        shots = ", ".join(f"{name}: {count}" for name, count in counts.items())
        notes.append(f"Classes have different numbers of examples ({shots}); that works, but balanced classes are fairer.")
    return TextTable(texts=table.texts, labels=table.labels, notes=notes)


def _clip(texts: Sequence[str], encoder: TextEncoder, what: str) -> tuple[list[str], list[str]]:
    """Cut texts to MAX_TEXT_CHARS; return them with notes on what was cut (here and by the encoder)."""
    clipped = [text[:MAX_TEXT_CHARS] for text in texts]
    count = sum(len(text) > MAX_TEXT_CHARS for text in texts)
    notes = [f"{count} {what} text(s) longer than {MAX_TEXT_CHARS} characters were cut to that length."] if count else []
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
) -> tuple[TextClassifier, list[str]]:
    """Embed the support texts (cached by text) and fit the named method.

    Args:
        table: the checked support set.
        encoder: the text encoder.
        method: "linear", "protonet" or "finetune" (any registered learner that consumes features or tokens).
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
    options = dict(options or {})
    learner: FewShotLearner | None = make_learner(method, _context(encoder), **options)
    if learner.input_kind == "features":
        learner = None  # the classifier fits it on the embeddings
    else:
        learner.progress = progress
        learner.fit(encoder.prepare(learner.input_kind, texts), labels)
    classifier = TextClassifier(
        method, class_names, features, labels, encoder.id, learner=learner, learner_options=options
    )
    return classifier, notes


def _context(encoder: TextEncoder):
    from fewshot_demo.methods import LearnerContext

    return LearnerContext(backbone_id=encoder.id, feature_dim=encoder.feature_dim, device=encoder.device)


def parse_queries(block: str | None) -> list[str]:
    """One query per non-blank line.

    Raises:
        ValueError: when there is none, or more than ``MAX_QUERIES``.
    """
    queries = split_lines(block)
    if not queries:
        raise ValueError("type at least one query text (one per line), then press Classify")
    if len(queries) > MAX_QUERIES:
        raise ValueError(f"{len(queries)} queries; at most {MAX_QUERIES} at once, split them into batches")
    return queries


def classify_texts(
    classifier: TextClassifier, encoder: TextEncoder, queries: Sequence[str]
) -> tuple[list[Prediction], list[str]]:
    """Embed (and, for a token learner, tokenise) the queries and classify them; return (predictions, notes)."""
    if classifier.encoder_id != encoder.id:
        raise ValueError(
            f"this classifier was fitted on {classifier.encoder_id!r} embeddings but {encoder.id!r} is selected; "
            "fit again or select the matching encoder"
        )
    texts, notes = _clip(queries, encoder, "query")
    features = encoder.embed(texts)
    tokens = None if classifier.consumes_features else encoder.prepare(classifier.learner.input_kind, texts)
    return classifier.predict(features, query_tokens=tokens), notes


def load_text_classifier(path: str | Path, encoder_id: str | None = None) -> TextClassifier:
    """Read and validate a saved text classifier (see ``FewShotClassifier.load``)."""
    classifier = TextClassifier.load(path, expected_encoder_id=encoder_id)
    return classifier
