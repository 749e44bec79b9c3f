"""The app's public API: named endpoints over ``fewshot_demo.service``, and the one list of them.

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    fitted = client.predict([handle_file("cat1.jpg"), handle_file("dog1.jpg")], ["cat", "dog"], api_name="/fit_images")
    client.predict(fitted["handle"], [handle_file("query.jpg")], api_name="/predict")["predictions"][0]["label"]

``add_endpoints`` registers the endpoints inside the app's Blocks; ``publish_only`` then hides every
other event (the tabs' buttons, which the browser calls) from the API page, where only
``PUBLIC_ENDPOINTS`` appear, each with its description. Hidden events stay callable, so nothing
the page does breaks. Every endpoint answers JSON; every refusal is a readable message.
"""

# No "from __future__ import annotations": Gradio reads the endpoints' return types at run time.
import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.service import Service, Upload

logger = logging.getLogger("fewshot_demo.app")

#: The endpoints the API page lists; every other event is callable but undocumented.
PUBLIC_ENDPOINTS = ("fit_images", "fit_texts", "predict", "predict_images", "predict_texts", "forget", "warmup")
#: Concurrency groups: fits and one-call classifications share the tabs' Classify group; a
#: classification by handle has its own, so a running fit never delays it.
CLASSIFY_GROUP = "classify"
PREDICT_GROUP = "predict"
COMPARE_GROUP = "compare"


@functools.cache
def service() -> Service:
    """The process's one service (its handle store), created on first use."""
    return Service()


# ------------------------------------------------------------------------------------------ files
def upload(value: Any, what: str) -> Upload:
    """A file the caller sent, from the value Gradio gives an endpoint.

    Only files uploaded to this server are accepted (Gradio checked a FileData's path on arrival;
    a bare path string, or a path outside the upload folder, is refused), so a caller cannot make
    the server read its own files.

    Raises:
        UserInputError: for anything else, saying how to send a file.
    """
    path = value.get("path") if isinstance(value, dict) else getattr(value, "path", None)
    if not isinstance(path, str) or not path:
        raise UserInputError(f"send {what} as an uploaded file (gradio_client: handle_file(path)), not as text")
    uploads = Path(get_upload_folder()).resolve()
    resolved = Path(os.path.abspath(path)).resolve()
    if not resolved.is_relative_to(uploads):
        raise UserInputError(f"{Path(path).name}: send {what} as an uploaded file (gradio_client: handle_file(path))")
    if not resolved.is_file():
        raise UserInputError(f"{Path(path).name} is no longer on the server (uploads are removed after a while); "
                             "send it again")
    name = (value.get("orig_name") if isinstance(value, dict) else getattr(value, "orig_name", None)) or resolved.name
    return Upload(str(resolved), Path(str(name)).name)


def uploads(values: Any, what: str, limit: int) -> list[Upload]:
    """Several uploaded files; more than ``limit`` are refused before any is looked at."""
    if values is None:
        return []
    values = values if isinstance(values, (list, tuple)) else [values]
    if len(values) > limit:
        raise UserInputError(f"{len(values)} {what}; at most {limit} in one call: split them into batches")
    return [upload(value, what) for value in values]


def _texts(values: Any, what: str) -> list[str] | None:
    """A list of strings, or None; anything else is refused with what to send."""
    if values is None:
        return None
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise UserInputError(f"send {what} as a list of strings")
    return list(values)


# ------------------------------------------------------------------------------------------ endpoints
def fit_images(support: list[FileData], labels: list[str] | None = None, method: str = "protonet",
               options: dict[str, Any] | None = None, encoder: str | None = None) -> dict[str, Any]:
    """Fit a few-shot image classifier and keep it: returns a handle for /predict, the classes and notes.

    Args:
        support: the support images, one class name per image in labels; or a single .zip holding one folder of images per class (labels empty).
        labels: the class name of each support image, in order.
        method: protonet (default), maml, linear, finetune, ... (any image method of the registry).
        options: the method's options, e.g. {"inner_steps": 5} for maml; checked against their bounds.
        encoder: the image backbone (default: the bundled efficientnet_lite0).
    Returns:
        {"handle", "modality", "method", "encoder", "classes", "support_per_class", "expires_after_idle_s", "notes"}: the handle is a secret token; it expires after expires_after_idle_s without use.
    """
    current = limits()
    files = uploads(support, "support images", current.max_classes * current.max_images_per_class)
    return service().fit_images(files, _texts(labels, "labels"), method, options, encoder)


def fit_texts(texts: list[str] | None = None, labels: list[str] | None = None, method: str = "linear",
              table: FileData | None = None, options: dict[str, Any] | None = None,
              encoder: str | None = None) -> dict[str, Any]:
    """Fit a few-shot text classifier and keep it: returns a handle for /predict, the classes and notes.

    Args:
        texts: the support texts, one class name per text in labels.
        labels: the class name of each support text, in order.
        method: linear (default), protonet, finetune, ...
        table: instead of texts and labels, a CSV, TSV or JSONL file with text and label columns.
        options: the method's options, e.g. {"steps": 10} for finetune.
        encoder: the text encoder (default: the bundled minilm:layers).
    Returns:
        {"handle", "modality", "method", "encoder", "classes", "support_per_class", "expires_after_idle_s", "notes"}.
    """
    return service().fit_texts(_texts(texts, "texts"), _texts(labels, "labels"),
                               upload(table, "the table") if table is not None else None, method, options, encoder)


def predict(handle: str, queries: list[FileData | str]) -> dict[str, Any]:
    """Classify queries with a fitted classifier, without sending its support set again.

    Args:
        handle: what /fit_images or /fit_texts returned.
        queries: image files for an image classifier (or images inline as data URLs, "data:image/png;base64,...", which spares the upload), strings for a text one.
    Returns:
        {"method", "encoder", "classes", "predictions", "notes"}; one prediction per query: {"query", "label", "probabilities": {class: p}, "nearest": [{"item", "class", "similarity"}]}, or {"query", "error"} for an image that cannot be read.
    """
    if not isinstance(queries, (list, tuple)):
        raise UserInputError("send the queries as a list (image files or strings)")
    current = limits()
    limit = max(current.max_query_images, current.max_query_texts)
    if len(queries) > limit:
        raise UserInputError(f"{len(queries)} queries; at most {limit} in one call: split them into batches")
    items = [query if isinstance(query, str) else upload(query, "query images") for query in queries]
    return service().predict(str(handle or ""), items)


def predict_images(support: list[FileData], labels: list[str] | None, queries: list[FileData],
                   method: str = "protonet", options: dict[str, Any] | None = None,
                   encoder: str | None = None) -> dict[str, Any]:
    """Fit on support images and classify query images in one call (nothing is kept on the server).

    Args:
        support: the support images, one class name per image in labels; or a single .zip holding one folder of images per class (labels empty).
        labels: the class name of each support image, in order.
        queries: the images to classify.
        method: protonet (default), maml, linear, finetune, ...
        options: the method's options, e.g. {"inner_steps": 5} for maml.
        encoder: the image backbone (default: the bundled efficientnet_lite0).
    Returns:
        {"method", "encoder", "classes", "predictions", "notes"}, as /predict.
    """
    current = limits()
    query_files = uploads(queries, "query images", current.max_query_images)  # counted before the support
    files = uploads(support, "support images", current.max_classes * current.max_images_per_class)
    return service().predict_images(files, _texts(labels, "labels"), query_files, method, options, encoder)


def predict_texts(texts: list[str] | None, labels: list[str] | None, queries: list[str], method: str = "linear",
                  table: FileData | None = None, options: dict[str, Any] | None = None,
                  encoder: str | None = None) -> dict[str, Any]:
    """Fit on support texts and classify query texts in one call (nothing is kept on the server).

    Args:
        texts: the support texts, one class name per text in labels.
        labels: the class name of each support text, in order.
        queries: the texts to classify.
        method: linear (default), protonet, finetune, ...
        table: instead of texts and labels, a CSV, TSV or JSONL file with text and label columns.
        options: the method's options, e.g. {"steps": 10} for finetune.
        encoder: the text encoder (default: the bundled minilm:layers).
    Returns:
        {"method", "encoder", "classes", "predictions", "notes"}, as /predict.
    """
    query_texts = _texts(queries, "queries") or []
    return service().predict_texts(_texts(texts, "texts"), _texts(labels, "labels"), query_texts,
                                   upload(table, "the table") if table is not None else None, method, options, encoder)


def forget(handle: str) -> dict[str, Any]:
    """Forget a fitted classifier now instead of when it expires.

    Args:
        handle: what /fit_images or /fit_texts returned.
    Returns:
        {"handle", "forgotten"}: forgotten is false for an unknown or expired handle.
    """
    return service().forget(str(handle or ""))


# ------------------------------------------------------------------------------------------ wiring
def add_endpoints(warmup: Any) -> None:
    """Register the public endpoints in the Blocks being built (call inside ``with gr.Blocks()``).

    Args:
        warmup: the app's warm-up function, published as /warmup.
    """
    current = limits()
    classify = dict(concurrency_id=CLASSIFY_GROUP, concurrency_limit=current.classify_concurrency)
    gr.api(fit_images, api_name="fit_images", **classify)
    gr.api(fit_texts, api_name="fit_texts", **classify)
    gr.api(predict_images, api_name="predict_images", **classify)
    gr.api(predict_texts, api_name="predict_texts", **classify)
    gr.api(predict, api_name="predict", concurrency_id=PREDICT_GROUP, concurrency_limit=current.predict_concurrency)
    gr.api(forget, api_name="forget", concurrency_limit=None)
    gr.api(warmup, api_name="warmup", concurrency_limit=None)


def publish_only(demo: gr.Blocks, public: tuple[str, ...] = PUBLIC_ENDPOINTS) -> list[str]:
    """Show only the ``public`` endpoints on the API page; every other event stays callable but is
    not listed ("undocumented"). Events that were private stay private.

    Returns:
        The api names that were hidden.
    """
    hidden = []
    for block_fn in demo.fns.values():
        if block_fn.api_visibility == "private" or block_fn.fn is None:
            continue
        if block_fn.api_name not in public:
            block_fn.api_visibility = "undocumented"
            hidden.append(str(block_fn.api_name))
        else:
            block_fn.api_visibility = "public"
    return hidden


def set_concurrency(demo: gr.Blocks, groups: dict[str, tuple[int | None, tuple[Any, ...]]]) -> None:
    """Put the events whose handler is one of a group's functions into that concurrency group.

    Args:
        demo: the built app.
        groups: {concurrency id: (limit, handler functions)}; a handler matches through the
            wrappers around it (``functools.wraps``) and partials.
    """
    for block_fn in demo.fns.values():
        if block_fn.fn is None:
            continue
        core = _innermost(block_fn.fn)
        for group, (limit, handlers) in groups.items():
            if any(core is _innermost(handler) for handler in handlers):
                block_fn.concurrency_id = group
                block_fn.concurrency_limit = limit


#: Seconds of GPU a handler of each group may hold on a ZeroGPU Space (spaces.GPU's ``duration``).
GPU_SECONDS = {CLASSIFY_GROUP: 60, PREDICT_GROUP: 20, COMPARE_GROUP: 240}


def on_gpu(demo: gr.Blocks, seconds: dict[str, int] = GPU_SECONDS) -> int:
    """Run the handlers of the heavy concurrency groups under ``spaces.GPU`` on a Hugging Face Space.

    Where the ``spaces`` package is not importable (anywhere but a Space), nothing changes; on a
    Space without ZeroGPU hardware ``spaces.GPU`` itself does nothing. Call it before
    ``guard.guard``, so error handling stays outside the GPU call.

    Args:
        demo: the built app, its events already in their concurrency groups.
        seconds: {concurrency id: GPU seconds one call may hold}.

    Returns:
        How many handlers now ask for a GPU.
    """
    try:
        import spaces
    except ImportError:
        return 0
    wrapped = 0
    for block_fn in demo.fns.values():
        if block_fn.fn is not None and block_fn.concurrency_id in seconds:
            block_fn.fn = spaces.GPU(duration=seconds[block_fn.concurrency_id])(block_fn.fn)
            wrapped += 1
    return wrapped


def _innermost(fn: Any) -> Any:
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        else:
            return fn


# ------------------------------------------------------------------------------------------ warm-up
class Warmup:
    """Loads the default image backbone and text encoder once, one loader at a time.

    ``load`` runs at start-up in a background thread; ``/warmup`` calls ``__call__``, which waits
    for a load in progress (the lock) instead of starting a second one, retries after a failure,
    and says "ready" only once both models are loaded.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.error: str | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def load(self) -> bool:
        """Load both models unless already loaded; True when they are."""
        with self._lock:
            if self._ready.is_set():
                return True
            from fewshot_demo.encoders.image import load_backbone
            from fewshot_demo.encoders.text import load_encoder

            try:
                load_backbone()
                load_encoder()
            except Exception as error:  # noqa: BLE001 - reported by /warmup, retried on the next call
                logger.exception("warm-up failed")
                self.error = f"{type(error).__name__}: {error}"
                return False
            self.error = None
            self._ready.set()
            return True

    def __call__(self) -> str:
        """Load the default image backbone and text encoder if needed; returns "ready" once both are loaded.

        Returns:
            "ready". Waits while a load is in progress; calling it again is harmless.
        """
        if not self.load():
            raise UserInputError("the default models could not be loaded on the server; try again in a minute "
                                 "(the server log says why)")
        return "ready"
