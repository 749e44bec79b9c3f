"""The app's public API: named endpoints over ``fewshot_demo.serving``, and the one list of them.

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    fitted = client.predict([handle_file("cat1.jpg"), handle_file("dog1.jpg")], ["cat", "dog"], api_name="/fit_images")
    client.predict(fitted["handle"], [handle_file("query.jpg")], api_name="/predict")["predictions"][0]["label"]

``add_endpoints`` registers the endpoints inside the app's Blocks (through ``ui.events.endpoint``):
only ``PUBLIC_ENDPOINTS`` appear on the API page, each with its description; every other event
(the tabs' buttons, which the browser calls) is undocumented or private, declared so where it is
wired. Every endpoint answers JSON; every refusal is a readable message.
"""

# No "from __future__ import annotations": gr.api reads the return types as objects (ui.gradio_fixes).
import base64
import binascii
import contextvars
import functools
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from gradio.data_classes import FileData
from gradio.utils import get_upload_folder

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core.project import Project, open_upload
from fewshot_demo.encoders.image import load_backbone
from fewshot_demo.encoders.registry import default_method
from fewshot_demo.encoders.text import load_encoder
from fewshot_demo.serving.requests import DATA_URL, Upload
from fewshot_demo.serving.service import Service
from fewshot_demo.ui import events
from fewshot_demo.ui.temp_files import TEMP_PREFIX

logger = logging.getLogger("fewshot_demo.app")

#: The endpoints the API page lists; every other event is callable but undocumented, or private.
PUBLIC_ENDPOINTS = ("fit_images", "fit_texts", "predict_images", "predict_texts", "predict", "forget", "warmup")
#: The public endpoints an MCP client sees as tools (``ui.mcp_server``); /warmup is for scripts, not agents.
MCP_TOOLS = ("fit_images", "fit_texts", "predict", "predict_images", "predict_texts", "forget")
#: A link to a file uploaded to this server, as Gradio serves it: ``<app>/gradio_api/file=<path>``.
FILE_URL = re.compile(r"https?://[^/]+(?:/[^?#]*)?/gradio_api/file=(?P<path>[^?#]+)", re.IGNORECASE)


@functools.cache
def service() -> Service:
    """The process's one service (its handle store), created on first use."""
    return Service()


# ------------------------------------------------------------------------------------------ files
def upload(value: Any, what: str) -> Upload:
    """A file the caller sent, from the value Gradio gives an endpoint.

    Only files uploaded to this server are accepted (Gradio checked a FileData's path on arrival;
    a bare path string, or a path outside the upload folder, is refused), so a caller cannot make
    the server read its own files. A string may be this server's link to an uploaded file
    (``.../gradio_api/file=<path>``), or, in an endpoint's call (``InlineFiles.scope``), an image
    itself as a data URL ("data:image/png;base64,..."): MCP clients send every file as a string
    (Gradio's MCP layer passes list and optional file arguments on as the strings it got). No URL
    is fetched.

    Raises:
        UserInputError: for anything else, saying how to send a file.
    """
    if isinstance(value, str) and DATA_URL.match(value) and (inline := InlineFiles.current()) is not None:
        return inline.save(value, what)
    if isinstance(value, str) and (link := FILE_URL.fullmatch(value.strip())):
        value = {"path": unquote(link.group("path"))}
    path = value.get("path") if isinstance(value, dict) else getattr(value, "path", None)
    if not isinstance(path, str) or not path:
        if isinstance(value, str) and urlsplit(value.strip()).scheme in ("http", "https"):
            raise UserInputError(f"{what}: this server fetches no URLs; send the image inline as a data URL "
                                 "(data:image/jpeg;base64,...), or upload it (POST /gradio_api/upload) and send its "
                                 "/gradio_api/file= link")
        raise UserInputError(f"send {what} as an uploaded file (gradio_client: handle_file(path)) or inline as a "
                             "data URL (data:image/jpeg;base64,...), not as text")
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


class InlineFiles:
    """The images one call sent inline as data URLs, written to a temporary folder made on the first
    one and removed when the call returns (a fitted classifier keeps no file).

    ``InlineFiles.scope(fn)`` is ``fn`` with such a folder open during each call; ``upload`` saves
    into the one open, named ``<support|query>-<n>.<type>`` (the name answers quote).
    """

    _open: contextvars.ContextVar["InlineFiles | None"] = contextvars.ContextVar("inline_files", default=None)

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.counts: dict[str, int] = {}

    @classmethod
    def current(cls) -> "InlineFiles | None":
        return cls._open.get()

    @classmethod
    def scope(cls, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            files = cls()
            token = cls._open.set(files)
            try:
                return fn(*args, **kwargs)
            finally:
                cls._open.reset(token)
                if files.folder is not None:
                    shutil.rmtree(files.folder, ignore_errors=True)

        return call

    def save(self, data_url: str, what: str) -> Upload:
        """The image in ``data_url`` as a file, checked as an upload is (size, then base64)."""
        start = DATA_URL.match(data_url)
        role = what.split()[0]
        self.counts[role] = self.counts.get(role, 0) + 1
        name = f"{role}-{self.counts[role]}.{data_url[len('data:image/'):start.end() - len(';base64,')].lower()}"
        payload, max_mb = data_url[start.end():], limits().max_upload_mb
        if len(payload) * 3 / 4 > max_mb * 2**20:
            raise UserInputError(f"{what}: {name} is larger than the {max_mb:g} MB this server accepts; "
                                 "resize the image and send it again")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise UserInputError(f"{what}: {name} is not valid base64 after its data: prefix; encode it again") from None
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "inline-"))
        path = self.folder / name
        path.write_bytes(data)
        return Upload(str(path), name)


def _texts(values: Any, what: str) -> list[str] | None:
    """A list of strings, or None; anything else is refused with what to send."""
    if values is None:
        return None
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise UserInputError(f"send {what} as a list of strings")
    return list(values)


def _project_setup(project: Project, modality: str, method: str | None, options: dict[str, Any] | None,
                   encoder: str | None) -> tuple[str, dict[str, Any], str]:
    """(method, options, encoder) for a fit on a project: its own unless the caller names others."""
    if project.modality != modality:
        other = {"image": "/fit_images", "text": "/fit_texts"}[project.modality]
        raise UserInputError(f"this project holds {project.modality}s; send it to {other}")
    kept = project.options if method in (None, project.method) else {}
    merged = kept | options if isinstance(options, dict) else options or kept  # the service refuses a non-object
    return method or project.method, merged, encoder or project.encoder_id


# ------------------------------------------------------------------------------------------ endpoints
def fit_images(support: list[FileData], labels: list[str] | None = None, method: str | None = None,
               options: dict[str, Any] | None = None, encoder: str | None = None) -> dict[str, Any]:
    """Fit a few-shot image classifier and keep it: returns a handle for /predict, the classes and notes.

    Send each image inline as a data URL ("data:image/jpeg;base64,...", the way for MCP clients), as
    an uploaded file (gradio_client: handle_file(path)), or as the /gradio_api/file= link an upload
    to this server returned; other URLs are not fetched.
    Then classify new images with predict(handle, queries), as often as needed; forget(handle) when done.

    Args:
        support: the support images, one class name per image in labels; or a single .zip (labels empty): a project saved with Save project, or one folder of images per class.
        labels: the class name of each support image, in order.
        method: protonet (default; a project's own method), maml, linear, finetune, ... (any image method of the registry).
        options: the method's options, e.g. {"inner_steps": 5} for maml; checked against their bounds.
        encoder: the image backbone (default: the bundled efficientnet_lite0).
    Returns:
        {"handle", "modality", "method", "encoder", "classes", "support_per_class", "expires_after_idle_s", "notes"}: the handle is a secret token; it expires after expires_after_idle_s without use.
    """
    current = limits()
    files = uploads(support, "support images", current.max_classes * current.max_images_per_class)
    if len(files) == 1 and files[0].name.lower().endswith(".zip") and not labels:
        with open_upload(files[0].path, files[0].name) as project:  # its files go when the fit is done
            items, names = project.labelled
            setup = _project_setup(project, "image", method, options, encoder)
            fitted = service().fit_images([Upload(str(item), item.name) for item in items], names, *setup)
        return fitted | {"notes": [*project.notes, *fitted["notes"]]}
    return service().fit_images(files, _texts(labels, "labels"), method, options, encoder)


def fit_texts(texts: list[str] | None = None, labels: list[str] | None = None, method: str | None = None,
              table: FileData | None = None, options: dict[str, Any] | None = None,
              encoder: str | None = None) -> dict[str, Any]:
    """Fit a few-shot text classifier and keep it: returns a handle for /predict, the classes and notes.

    Send a few example texts per class (texts, with one class name each in labels). Then classify
    new texts with predict(handle, queries), as often as needed; forget(handle) when done.

    Args:
        texts: the support texts, one class name per text in labels.
        labels: the class name of each support text, in order.
        method: linear (default; a project's own method), protonet, finetune, ...
        table: instead of texts and labels, a CSV, TSV or JSONL file with text and label columns, or a text project (.zip) saved with Save project.
        options: the method's options, e.g. {"steps": 10} for finetune.
        encoder: the text encoder (default: the bundled minilm:layers).
    Returns:
        {"handle", "modality", "method", "encoder", "classes", "support_per_class", "expires_after_idle_s", "notes"}.
    """
    file = upload(table, "the table") if table is not None else None
    if file is not None and file.name.lower().endswith(".zip") and not texts:
        with open_upload(file.path, file.name) as project:
            items, names = project.labelled
            fitted = service().fit_texts(items, names, None, *_project_setup(project, "text", method, options, encoder))
        return fitted | {"notes": [*project.notes, *fitted["notes"]]}
    return service().fit_texts(_texts(texts, "texts"), _texts(labels, "labels"), file, method, options, encoder)


def predict(handle: str, queries: list[FileData | str]) -> dict[str, Any]:
    """Classify queries with the classifier a handle from fit_images or fit_texts names, without sending its support set again.

    For an image classifier send images inline as data URLs ("data:image/jpeg;base64,...", which
    spares an upload; the way for MCP clients), as uploaded files or their /gradio_api/file= links;
    for a text classifier, the texts.

    Args:
        handle: the "handle" /fit_images or /fit_texts returned: a secret token, valid until expires_after_idle_s pass without use.
        queries: the images or texts to classify, as above.
    Returns:
        {"method", "encoder", "classes", "predictions", "notes", "suggestions"}; one prediction per query: {"query", "label", "probabilities": {class: p}, "nearest": [{"item", "class", "similarity"}]}, or {"query", "error"} for an image that cannot be read; suggestions, what to add next: {"rule", "confused_pairs": [{"true_class", "predicted_class", "mistakes", "torn_queries", "examples": [{"example", "looks_like"}]}], "classes": [{"name", "reason" ("few" or "spread"), "n_examples", "spread", "outlier", "message"}], "queries": [{"query", "index", "label", "runner_up", "margin", "typicality", "score"}], most useful first}.
    """
    if not isinstance(queries, (list, tuple)):
        raise UserInputError("send the queries as a list (image files or strings)")
    current = limits()
    limit = max(current.max_query_images, current.max_query_texts)
    if len(queries) > limit:
        raise UserInputError(f"{len(queries)} queries; at most {limit} in one call: split them into batches")
    items = [query if isinstance(query, str) and not FILE_URL.fullmatch(query.strip()) else upload(query, "query images")
             for query in queries]
    return service().predict(str(handle or ""), items)


def predict_images(support: list[FileData], labels: list[str] | None, queries: list[FileData],
                   method: str = default_method("image"), options: dict[str, Any] | None = None,
                   encoder: str | None = None) -> dict[str, Any]:
    """Fit on support images and classify query images in one call (nothing is kept on the server).

    Send each image inline as a data URL ("data:image/jpeg;base64,...", the way for MCP clients), as
    an uploaded file (gradio_client: handle_file(path)), or as the /gradio_api/file= link an upload
    to this server returned; other URLs are not fetched.

    Args:
        support: the support images, one class name per image in labels; or a single .zip holding one folder of images per class (labels empty).
        labels: the class name of each support image, in order.
        queries: the images to classify, sent as the support images are.
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


def predict_texts(texts: list[str] | None, labels: list[str] | None, queries: list[str], method: str = default_method("text"),
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
    """Forget a fitted classifier now instead of when it expires: its handle stops working.

    Args:
        handle: the "handle" /fit_images or /fit_texts returned.
    Returns:
        {"handle", "forgotten"}: forgotten is false for an unknown or expired handle.
    """
    return service().forget(str(handle or ""))


# ------------------------------------------------------------------------------------------ wiring
def add_endpoints(warmup: Any) -> None:
    """Register the public endpoints in the Blocks being built (call inside ``with gr.Blocks()``).

    Fits and one-call classifications share the tabs' Classify group; a classification by handle
    has its own, so a running fit never delays it; forgetting and warming up never wait.

    Args:
        warmup: the app's warm-up function, published as /warmup.
    """
    endpoints = {"fit_images": (fit_images, events.CLASSIFY), "fit_texts": (fit_texts, events.CLASSIFY),
                 "predict_images": (predict_images, events.CLASSIFY), "predict_texts": (predict_texts, events.CLASSIFY),
                 "predict": (predict, events.PREDICT), "forget": (forget, events.UNLIMITED),
                 "warmup": (warmup, events.UNLIMITED)}
    for name, (fn, group) in endpoints.items():
        events.endpoint(InlineFiles.scope(fn), name, group)


# ------------------------------------------------------------------------------------------ warm-up
class Warmup:
    """Loads the default image backbone and text encoder once, one loader at a time.

    ``load`` runs at start-up in a background thread; ``/warmup`` calls ``__call__``, which waits
    for a load in progress (the lock) instead of starting a second one, retries after a failure,
    and says "ready" only once both models are loaded.

    Args:
        loaders: what loading means, one call each (default: the default backbone, the default encoder).
    """

    def __init__(self, loaders: tuple[Callable[[], Any], ...] = (load_backbone, load_encoder)) -> None:
        self._loaders = loaders
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
            try:
                for load in self._loaders:
                    load()
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
