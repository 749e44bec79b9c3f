"""The app's programmatic API without any web framework: fit once, keep a handle, classify by handle.

    service = Service()
    fitted = service.fit_images([("bird", "b1.jpg"), ("bird", "b2.jpg"), ("fish", "f1.jpg")])
    service.predict(fitted["handle"], ["query.jpg"])["predictions"][0]["label"]

Every answer is plain JSON (dicts, lists, strings, numbers): per query the label, the probability of
each class and the most similar support items. A fitted classifier is kept under a handle: a random,
unguessable token (knowing it is what lets a caller use the classifier) that expires after a while
without use, in a store bounded in count and in memory; the least recently used goes first.

Every limit (``fewshot_demo.config.limits``) is checked on counts and sizes before a file is read, and
every problem is a ``UserInputError`` with the fix in its message. The web endpoints in
``fewshot_demo.ui.api`` are thin over this module.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from fewshot_demo.api import Classifier, fit
from fewshot_demo.config.checks import check_count, check_file_sizes
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core.classifier import Prediction
from fewshot_demo.encoders.registry import default_method
from fewshot_demo.runtime.priority import PRIORITY

#: How much of a support text a prediction quotes as a nearest example.
QUOTE_CHARS = 200
#: Nearest support items reported per query.
N_NEAREST = 3
#: The start of an image sent inline in /predict, as browsers write data URLs: it spares the caller
#: the upload request (one HTTP round trip and a temporary file on the server).
DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,", re.IGNORECASE)


# ------------------------------------------------------------------------------------------ handles
@dataclass
class Fitted:
    """One kept classifier.

    Attributes:
        classifier: the fitted classifier (its ``support_items`` name the nearest examples).
        nbytes: the memory its tensors hold, as counted by ``tensor_bytes``.
        last_used: ``clock()`` of its last fit or prediction.
        lock: one prediction at a time per classifier (learners are not all re-entrant).
    """

    classifier: Classifier
    nbytes: int
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class HandleStore:
    """Fitted classifiers under random tokens, bounded in count, memory and idle time.

    Args:
        max_handles: most classifiers kept; a new one pushes out the least recently used.
        max_bytes: most memory kept, counted by ``tensor_bytes``; likewise.
        ttl_s: a classifier unused for this long is forgotten.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, max_handles: int, max_bytes: float, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_handles = max_handles
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: OrderedDict[str, Fitted] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, classifier: Classifier) -> str:
        """Keep a classifier; return its new handle.

        Raises:
            UserInputError: when this one classifier alone is larger than the store's memory.
        """
        nbytes = tensor_bytes(classifier)
        if nbytes > self.max_bytes:
            raise UserInputError(
                f"this classifier holds {nbytes / 2**20:.0f} MB, more than the {self.max_bytes / 2**20:.0f} MB this "
                "server keeps; use fewer support items, or a method that does not train the backbone"
            )
        handle = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            self._entries[handle] = Fitted(classifier, nbytes, self.clock())
            while len(self._entries) > self.max_handles or self.nbytes > self.max_bytes:
                self._entries.popitem(last=False)
        return handle

    def get(self, handle: str) -> Fitted:
        """The classifier kept under ``handle``, marked as used now.

        Raises:
            UserInputError: for an unknown, forgotten or expired handle, saying to fit again.
        """
        with self._lock:
            self._expire()
            entry = self._entries.get(str(handle or "").strip())
            if entry is None:
                raise UserInputError(
                    "unknown or expired handle: handles last "
                    f"{self.ttl_s / 60:.0f} minutes after their last use and the server keeps at most "
                    f"{self.max_handles}; fit the support set again (/fit_images or /fit_texts) for a new one"
                )
            entry.last_used = self.clock()
            self._entries.move_to_end(handle)
            return entry

    def drop(self, handle: str) -> bool:
        """Forget a handle; True when it was kept."""
        with self._lock:
            return self._entries.pop(str(handle or "").strip(), None) is not None

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def _expire(self) -> None:
        now = self.clock()
        for handle in [h for h, entry in self._entries.items() if now - entry.last_used > self.ttl_s]:
            del self._entries[handle]


def tensor_bytes(root: Any, depth: int = 4) -> int:
    """Bytes of the distinct tensors reachable from ``root`` through attributes, lists and dicts
    (modules count their parameters and buffers): what keeping ``root`` costs in memory."""
    seen: set[int] = set()
    total = 0

    def visit(value: Any, level: int) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            key = value.untyped_storage().data_ptr() if value.numel() else id(value)
            if key not in seen:
                seen.add(key)
                total += value.untyped_storage().nbytes()
        elif isinstance(value, nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                visit(tensor.detach(), level)
        elif level > 0 and isinstance(value, (list, tuple)):
            for item in value:
                visit(item, level - 1)
        elif level > 0 and isinstance(value, dict):
            for item in value.values():
                visit(item, level - 1)
        elif level > 0 and hasattr(value, "__dict__") and not isinstance(value, type):
            for item in vars(value).values():
                visit(item, level - 1)

    visit(root, depth)
    return total


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


# ------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class Upload:
    """A file the caller sent: where it is on this server and the name the caller gave it."""

    path: str
    name: str


def inline_image(query: str, number: int, max_mb: float) -> bytes:
    """The bytes of query image ``number`` (1-based) sent inline as a data URL ("data:image/png;base64,...").

    Raises:
        UserInputError: when it is not such a data URL, is larger than ``max_mb``, or is not base64.
    """
    start = DATA_URL.match(query)
    if start is None:
        raise UserInputError("this is an image classifier: send the queries as image files (gradio_client: "
                             "handle_file(path)) or as data URLs (data:image/png;base64,...), not as text")
    payload = query[start.end():]
    if len(payload) * 3 / 4 > max_mb * 2**20:
        raise UserInputError(f"query {number} is larger than the {max_mb:g} MB this server accepts; "
                             "resize the image and send it again")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise UserInputError(f"query {number} is not valid base64 after its data: prefix; encode the file again") from None


def _group(items: Sequence[Any], labels: Sequence[str] | None, what: str) -> dict[str, list[Any]]:
    """{class: items} from items and one label per item, with the class and per-class limits."""
    if labels is None or len(labels) != len(items):
        got = "no labels" if labels is None else f"{len(labels)} labels"
        raise UserInputError(f"{len(items)} {what} but {got}; give one class name per {what[:-1]}, in the same order")
    classes: dict[str, list[Any]] = {}
    for item, label in zip(items, labels):
        classes.setdefault(" ".join(str(label).split()), []).append(item)
    current = limits()
    check_count(len(classes), current.max_classes, "classes", "keep the classes you need most")
    return classes


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
            from fewshot_demo.data.builtin import zip_classes

            check_file_sizes([support[0].path], current.max_upload_mb)
            with zip_classes(support[0].path, support[0].name) as classes:  # unpacked files go at the end
                return fit(classes, method, encoder, modality="image", **_options(options))
        check_count(len(support), current.max_classes * current.max_images_per_class, "support images",
                    f"keep at most {current.max_images_per_class} per class")
        groups = _group(support, labels, "images")
        for name, items in groups.items():
            check_count(len(items), current.max_images_per_class, f"images in class {name!r}", "keep the most typical ones")
        check_file_sizes([upload.path for upload in support], current.max_upload_mb)
        classes = {name: [upload.path for upload in uploads] for name, uploads in groups.items()}
        return fit(classes, method, encoder, modality="image", **_options(options))

    def _fit_texts(self, texts: Sequence[str] | None, labels: Sequence[str] | None, table: Upload | None,
                   method: str | None, options: Mapping[str, Any] | None, encoder: str | None) -> Classifier:
        from fewshot_demo.data.texts import clean_text, read_text_table

        current = limits()
        if table is not None:
            check_file_sizes([table.path], current.max_upload_mb)
            read = read_text_table(table.path, name=table.name)
            texts, labels = read.texts, read.labels
        if not texts:
            raise UserInputError("send the support texts with one class name each (texts and labels), or a CSV/TSV/JSONL "
                                 "table with text and label columns")
        check_count(len(texts), current.max_support_texts, "support texts", "keep a sample of each class")
        classes = _group([clean_text(t) for t in texts], [clean_text(label) for label in labels or []]
                         if labels is not None else None, "texts")
        return fit(classes, method or default_method("text"), encoder, modality="text", **_options(options))

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
        queries = list(queries or [])
        fitted = classifier.fitted
        notes: list[str] = []
        if classifier.modality == "image":
            answers, notes = self._predict_images(classifier, self._check_image_queries(queries))
        else:
            from fewshot_demo.data.texts import clean_text

            self._check_text_queries(queries)
            texts = [clean_text(query) for query in queries]
            answers = [prediction_json(p, q, classifier.support_items, fitted.class_names, fitted.support_labels.tolist())
                       for p, q in zip(classifier.predict(texts), texts)]
        return {"method": fitted.method, "encoder": fitted.encoder_id, "classes": list(fitted.class_names),
                "predictions": answers, "notes": notes}

    def _predict_images(self, classifier: Classifier, queries: Sequence[Upload | bytes]) -> tuple[list[dict], list[str]]:
        """Read every query (a file, or the bytes of a data URL, from ``_check_image_queries``; one
        that cannot be read gets an "error" entry), classify the rest in one batch."""
        from fewshot_demo.data.images import load_image

        fitted = classifier.fitted
        names = [query.name if isinstance(query, Upload) else f"query {number}" for number, query in enumerate(queries, 1)]
        images, positions, answers, notes = [], [], [], []
        for position, query in enumerate(queries):
            try:
                images.append(load_image(query.path if isinstance(query, Upload) else query))
                positions.append(position)
            except ValueError as error:
                message = str(error) if isinstance(query, Upload) else f"{names[position]}: {error}"
                answers.append((position, {"query": names[position], "error": message}))
                notes.append(f"skipped {message}")
        if not images:
            raise UserInputError("none of the query files is a usable image; " + "; ".join(notes))
        from fewshot_demo.api import _backbone
        from fewshot_demo.core.image_task import classify_images

        predictions = classify_images(fitted, _backbone(fitted.encoder_id), images)
        labels = fitted.support_labels.tolist()
        for position, prediction in zip(positions, predictions):
            answers.append((position, prediction_json(prediction, names[position], classifier.support_items,
                                                      fitted.class_names, labels)))
        return [answer for _, answer in sorted(answers, key=lambda pair: pair[0])], notes


def _options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A method's options as keywords: a mapping of names (the registry checks names and bounds)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
        raise UserInputError('options must be a JSON object of option names and values, e.g. {"inner_steps": 5}')
    reserved = {"modality", "support", "method", "encoder"} & set(options)
    if reserved:
        raise UserInputError(f"{', '.join(sorted(reserved))} is a parameter of its own, not a method option")
    return dict(options)
