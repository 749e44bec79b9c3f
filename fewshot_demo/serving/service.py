"""The app's programmatic API without any web framework: fit once, keep a handle, classify by handle.

    service = Service()
    fitted = service.fit_images([("bird", "b1.jpg"), ("bird", "b2.jpg"), ("fish", "f1.jpg")])
    service.predict(fitted["handle"], ["query.jpg"])["predictions"][0]["label"]

Every answer is plain JSON (dicts, lists, strings, numbers): per query the label, the probability of
each class and the most similar support items; beside the predictions, ``suggestions``: what to add
next. A fitted classifier is kept under a handle: a random, unguessable token (knowing it is what
lets a caller use the classifier) that expires after a while without use, in a store bounded in count
and in memory; the least recently used goes first.

Every limit (``fewshot_demo.config.limits``) is checked on counts and sizes before a file is read, and
every problem is a ``UserInputError`` with the fix in its message. The web endpoints in
``fewshot_demo.ui.api`` are thin over this module.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from fewshot_demo.api import Classifier, fit
from fewshot_demo.config.checks import check_count, check_file_sizes
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core.classifier import Prediction
from fewshot_demo.core.suggestions import Suggestions
from fewshot_demo.data.images import load_image
from fewshot_demo.data.texts import clean_text, read_text_table
from fewshot_demo.data.zips import zip_classes
from fewshot_demo.encoders.registry import default_method, get_encoder
from fewshot_demo.runtime.priority import PRIORITY
from fewshot_demo.serving.handles import HandleStore
from fewshot_demo.serving.requests import (
    Upload,
    group_by_label,
    inline_image,
    method_options,
)

#: How much of a support text a prediction quotes as a nearest example.
QUOTE_CHARS = 200
#: Nearest support items reported per query.
N_NEAREST = 3


# ------------------------------------------------------------------------------------------ answers
def prediction_json(prediction: Prediction, query: str, support_items: Sequence[str],
                    class_names: Sequence[str], support_labels: Sequence[int]) -> dict[str, Any]:
    """One query's answer: label, probabilities (rounded to 4 places) and the nearest support items."""
    nearest = []
    for index, similarity in prediction.nearest:
        item = support_items[index] if index < len(support_items) else f"support item {index + 1}"
        nearest.append({
            "item": item if len(item) <= QUOTE_CHARS else item[: QUOTE_CHARS - 1] + "…",
            "class": class_names[support_labels[index]],
            "similarity": round(similarity, 4),
        })
    return {
        "query": query,
        "label": prediction.label,
        "probabilities": {name: round(value, 4) for name, value in prediction.probabilities.items()},
        "nearest": nearest,
    }


def suggestions_json(suggestions: Suggestions, query_names: Sequence[str],
                     support_items: Sequence[str]) -> dict[str, Any]:
    """``Suggestions.to_dict`` with each query and support index also named (a query by its name, a
    support item as ``prediction_json`` quotes it)."""
    def item(index: int | None) -> str | None:
        if index is None:
            return None
        name = support_items[index] if index < len(support_items) else f"support item {index + 1}"
        return name if len(name) <= QUOTE_CHARS else name[: QUOTE_CHARS - 1] + "…"

    answer = suggestions.to_dict()
    for pair in answer["confused_pairs"]:
        pair["examples"] = [{"example": item(a), "looks_like": item(b)} for a, b in pair["examples"]]
    for advice in answer["classes"]:
        advice["outlier"] = item(advice["outlier"])
    for query in answer["queries"]:
        query["query"] = query_names[query["index"]]
    return answer


class Service:
    """The API's operations over one handle store (see the module docstring).

    Args:
        store: where fitted classifiers are kept (default: bounded by ``limits()``).
    """

    def __init__(self, store: HandleStore | None = None) -> None:
        current = limits()
        self.store = store or HandleStore(current.max_handles, current.handle_memory_mb * 2**20, current.handle_ttl_s)

    # ---- fitting ----------------------------------------------------------------------------
    def fit_images(self, support: Sequence[Upload], labels: Sequence[str] | None = None, method: str | None = None,
                   options: Mapping[str, Any] | None = None, encoder: str | None = None) -> dict[str, Any]:
        """Fit on images, keep the classifier; return its handle and what was fitted.

        Args:
            support: image files, with ``labels`` giving each one's class; or a single .zip of class
                folders (``labels`` then stays empty).
            labels, method, options, encoder: as ``fewshot_demo.fit``.
        """
        return self._keep(self._fit_images(support, labels, method, options, encoder))

    def fit_texts(self, texts: Sequence[str] | None = None, labels: Sequence[str] | None = None,
                  table: Upload | None = None, method: str | None = None, options: Mapping[str, Any] | None = None,
                  encoder: str | None = None) -> dict[str, Any]:
        """Fit on texts with one label each, or on a CSV/TSV/JSONL table; return the handle."""
        return self._keep(self._fit_texts(texts, labels, table, method, options, encoder))

    def forget(self, handle: str) -> dict[str, Any]:
        """Drop a handle before it expires."""
        return {"handle": handle, "forgotten": self.store.drop(handle)}

    # ---- classifying ------------------------------------------------------------------------
    def predict(self, handle: str, queries: Sequence[Any]) -> dict[str, Any]:
        """Classify queries with a kept classifier: image uploads or data URLs for an image handle, strings for a text one."""
        entry = self.store.get(handle)
        with entry.lock, PRIORITY.urgent():  # fits and comparisons give way to it between forward passes
            return self._predict(entry.classifier, queries)

    def predict_images(self, support: Sequence[Upload], labels: Sequence[str] | None, queries: Sequence[Upload],
                       method: str | None = None, options: Mapping[str, Any] | None = None,
                       encoder: str | None = None) -> dict[str, Any]:
        """Fit on the support images and classify the query images in one call (nothing is kept)."""
        self._check_image_queries(queries)  # before the support set is read
        classifier = self._fit_images(support, labels, method, options, encoder)
        answer = self._predict(classifier, queries)
        return answer | {"notes": classifier.notes + answer["notes"]}

    def predict_texts(self, texts: Sequence[str] | None, labels: Sequence[str] | None, queries: Sequence[str],
                      table: Upload | None = None, method: str | None = None,
                      options: Mapping[str, Any] | None = None, encoder: str | None = None) -> dict[str, Any]:
        """Fit on the support texts and classify the query texts in one call (nothing is kept)."""
        self._check_text_queries(queries)
        classifier = self._fit_texts(texts, labels, table, method, options, encoder)
        answer = self._predict(classifier, queries)
        return answer | {"notes": classifier.notes + answer["notes"]}

    # ---- inside -----------------------------------------------------------------------------
    def _keep(self, classifier: Classifier) -> dict[str, Any]:
        # The self-check that /predict's suggestions read, made now: the fit is the slow call anyway, and
        # /predict, the urgent one, then costs the same the first time as every time after.
        classifier.fitted.suggestions()
        handle = self.store.put(classifier)
        fitted = classifier.fitted
        return {
            "handle": handle,
            "modality": classifier.modality,
            "method": fitted.method,
            "encoder": fitted.encoder_id,
            "classes": list(fitted.class_names),
            "support_per_class": {name: int((fitted.support_labels == i).sum()) for i, name in enumerate(fitted.class_names)},
            "expires_after_idle_s": self.store.ttl_s,
            "notes": list(classifier.notes),
        }

    def _fit_images(self, support: Sequence[Upload], labels: Sequence[str] | None, method: str | None,
                    options: Mapping[str, Any] | None, encoder: str | None) -> Classifier:
        support = list(support or [])
        if not support:
            raise UserInputError("send the support images (one class name per image in labels), or one .zip of class folders")
        current = limits()
        method = method or default_method("image")
        if len(support) == 1 and support[0].name.lower().endswith(".zip") and not labels:
            check_file_sizes([support[0].path], current.max_upload_mb)
            with zip_classes(support[0].path, support[0].name) as classes:  # unpacked files go at the end
                return fit(classes, method, encoder, modality="image", **method_options(options))
        check_count(len(support), current.max_classes * current.max_images_per_class, "support images",
                    f"keep at most {current.max_images_per_class} per class")
        groups = group_by_label(support, labels, "images")
        for name, items in groups.items():
            check_count(len(items), current.max_images_per_class, f"images in class {name!r}", "keep the most typical ones")
        check_file_sizes([upload.path for upload in support], current.max_upload_mb)
        classes = {name: [upload.path for upload in uploads] for name, uploads in groups.items()}
        return fit(classes, method, encoder, modality="image", **method_options(options))

    def _fit_texts(self, texts: Sequence[str] | None, labels: Sequence[str] | None, table: Upload | None,
                   method: str | None, options: Mapping[str, Any] | None, encoder: str | None) -> Classifier:
        current = limits()
        if table is not None:
            check_file_sizes([table.path], current.max_upload_mb)
            read = read_text_table(table.path, name=table.name)
            texts, labels = read.texts, read.labels
        if not texts:
            raise UserInputError("send the support texts with one class name each (texts and labels), or a CSV/TSV/JSONL "
                                 "table with text and label columns")
        check_count(len(texts), current.max_support_texts, "support texts", "keep a sample of each class")
        classes = group_by_label([clean_text(t) for t in texts], [clean_text(label) for label in labels or []]
                         if labels is not None else None, "texts")
        return fit(classes, method or default_method("text"), encoder, modality="text", **method_options(options))

    def _check_image_queries(self, queries: Sequence[Any]) -> list[Upload | bytes]:
        """The queries checked before any is read: files as they are, data URLs as their bytes."""
        current = limits()
        if not queries:
            raise UserInputError("send at least one query image")
        check_count(len(queries), current.max_query_images, "query images", "split them into batches")
        sources = [query if isinstance(query, Upload) else inline_image(str(query), number, current.max_upload_mb)
                   for number, query in enumerate(queries, 1)]
        check_file_sizes([query.path for query in queries if isinstance(query, Upload)], current.max_upload_mb)
        return sources

    def _check_text_queries(self, queries: Sequence[Any]) -> None:
        if not queries:
            raise UserInputError("send at least one query text")
        check_count(len(queries), limits().max_query_texts, "query texts", "split them into batches")
        if not all(isinstance(query, str) for query in queries):
            raise UserInputError("this is a text classifier: send the queries as strings, not files")

    def _predict(self, classifier: Classifier, queries: Sequence[Any]) -> dict[str, Any]:
        answer = {"image": self._answer_images, "text": self._answer_texts}[classifier.modality]
        answers, notes, suggestions = answer(classifier, list(queries or []))
        fitted = classifier.fitted
        return {"method": fitted.method, "encoder": fitted.encoder_id, "classes": list(fitted.class_names),
                "predictions": answers, "notes": notes, "suggestions": suggestions}

    def _answer_texts(self, classifier: Classifier, queries: list[Any]) -> tuple[list[dict], list[str], dict]:
        self._check_text_queries(queries)
        texts = [clean_text(query) for query in queries]
        predictions, suggestions, notes = classifier.predict_and_suggest(texts)
        return ([_answer(classifier, prediction, text) for prediction, text in zip(predictions, texts)], notes,
                suggestions_json(suggestions, texts, classifier.support_items))

    def _answer_images(self, classifier: Classifier, queries: list[Any]) -> tuple[list[dict], list[str], dict]:
        """Read every query (a file, or the bytes of a data URL, from ``_check_image_queries``; one
        that cannot be read gets an "error" entry), classify the rest in one batch."""
        sources = self._check_image_queries(queries)
        names = [query.name if isinstance(query, Upload) else f"query {number}" for number, query in enumerate(sources, 1)]
        images, positions, answers, notes = [], [], [], []
        for position, query in enumerate(sources):
            try:
                images.append(load_image(query.path if isinstance(query, Upload) else query))
                positions.append(position)
            except ValueError as error:
                message = str(error) if isinstance(query, Upload) else f"{names[position]}: {error}"
                answers.append((position, {"query": names[position], "error": message}))
                notes.append(f"skipped {message}")
        if not images:
            raise UserInputError("none of the query files is a usable image; " + "; ".join(notes))
        fitted = classifier.fitted
        predictions, features, inputs = fitted.classify_with_features(get_encoder(fitted.encoder_id), images,
                                                                      n_nearest=N_NEAREST)
        for position, prediction in zip(positions, predictions):
            answers.append((position, _answer(classifier, prediction, names[position])))
        probabilities = torch.tensor([list(prediction.probabilities.values()) for prediction in predictions])
        suggestions = suggestions_json(fitted.suggestions(features, inputs, query_probabilities=probabilities),
                                       [names[p] for p in positions], classifier.support_items)
        return [answer for _, answer in sorted(answers, key=lambda pair: pair[0])], notes, suggestions


def _answer(classifier: Classifier, prediction: Prediction, query: str) -> dict[str, Any]:
    fitted = classifier.fitted
    return prediction_json(prediction, query, classifier.support_items, fitted.class_names,
                           fitted.support_labels.tolist())
