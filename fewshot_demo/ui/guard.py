"""What keeps the app serving strangers: readable errors, guarded inputs, owned sessions, no leftovers.

``guard(demo)`` is called once from ``app.py`` after the Blocks are built, and covers every event:

- Errors: each handler's exceptions become a message. A ``ValueError`` (the core's "what to fix")
  is shown as it is; anything else is logged on the server with an incident number and the user
  gets a generic message that says what to do. No message shows a traceback or a path on the
  server: upload and temporary folders are cut from every message.
- Image inputs (webcam, clipboard, upload): the file's size and pixel count are checked from its
  header before Gradio decodes it, so a decompression bomb gets a message, not a failure.
- Temporary files a handler writes (saved classifiers, exports) are removed when the session ends,
  and any left behind after ``limits().temp_max_age_s``.

``SessionGuard`` (an ASGI middleware that ``GuardedBlocks.launch`` installs) binds each Gradio
session to the browser or client that opened it, with a random HttpOnly cookie: a request that
names someone else's session (to read its results, its saved files, or press its Stop) is refused.
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

import gradio as gr

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.runtime.allocator import keep_memory_flat

logger = logging.getLogger("fewshot_demo.app")

#: Prefix of the temporary folders the app's handlers create (``tempfile.mkdtemp(prefix="fewshot-...")``).
TEMP_PREFIX = "fewshot-"
GENERIC_MESSAGE = (
    "Something went wrong on the server while doing this (incident {incident}). Your inputs are kept: "
    "try again; if it happens again, try fewer or smaller files, or another method, and report the incident number."
)


# ------------------------------------------------------------------------------------------ messages
@functools.cache
def _private_folders() -> list[str]:
    """Folders whose paths must not appear in messages: Gradio's uploads, the temporary folder, the
    home folder, the app's own folder and Python's (a path in them shows as its last part)."""
    from gradio.utils import get_upload_folder

    folders = {get_upload_folder(), tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir()), str(Path.home()),
               str(Path(__file__).resolve().parents[2]), sys.prefix, sys.base_prefix}
    return sorted((f.rstrip("/") for f in folders if f and f != "/"), key=len, reverse=True)


def scrub(message: str) -> str:
    """The message without server paths: a path under a private folder becomes its file name."""
    for folder in _private_folders():
        message = re.sub(re.escape(folder) + r"/(?:[^\s'\"/,;:)]+/)*", "", message)
    return message


def user_message(error: BaseException) -> str:
    """What the user reads for an error: its message for a UserInputError or gr.Error, scrubbed and
    HTML-escaped (Gradio renders messages as HTML); a generic one, logged with an incident number,
    for anything else."""
    if isinstance(error, (gr.Error, UserInputError)) and str(error.message if isinstance(error, gr.Error) else error):
        text = error.message if isinstance(error, gr.Error) else str(error)
        return html.escape(scrub(str(text)), quote=False)
    incident = secrets.token_hex(4)
    logger.error("incident %s: %s", incident, type(error).__name__, exc_info=error)
    return GENERIC_MESSAGE.format(incident=incident)


def _as_gradio_error(error: BaseException) -> gr.Error:
    if isinstance(error, gr.Error):
        return gr.Error(user_message(error), duration=error.duration, visible=error.visible, title=error.title,
                        print_exception=False)
    return gr.Error(user_message(error), print_exception=False)


def readable_errors(handler: Callable[..., Any], on_output: Callable[[Any], None] | None = None) -> Callable[..., Any]:
    """Wrap a handler so every exception reaches the user as a ``gr.Error`` with a readable message.

    Generator handlers stay generators (results still stream). ``on_output`` sees every value the
    handler returns or yields (the temporary-file tracker reads paths from it).
    """
    seen = on_output or (lambda value: None)
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streamed(*args: Any, **kwargs: Any) -> Any:
            try:
                for value in handler(*args, **kwargs):
                    seen(value)
                    yield value
            except Exception as error:  # noqa: BLE001 - every error becomes a message
                raise _as_gradio_error(error) from None

        return streamed

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            value = handler(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - every error becomes a message
            raise _as_gradio_error(error) from None
        seen(value)
        return value

    return wrapped


# ------------------------------------------------------------------------------------------ image inputs
def guard_image_input(component: gr.Image) -> None:
    """Check an image input's file (size on disk, pixels from its header) before Gradio decodes it,
    and turn a failure of Gradio's own decoding into a message."""
    original = component.preprocess

    @functools.wraps(original)
    def preprocess(payload: Any) -> Any:
        path = getattr(payload, "path", None) or (payload.get("path") if isinstance(payload, dict) else None)
        if path:
            from fewshot_demo.data.images import check_image_header

            try:
                check_image_header(path)
            except ValueError as error:
                raise gr.Error(user_message(error), print_exception=False) from None
        try:
            return original(payload)
        except Exception as error:  # noqa: BLE001 - Pillow fails in many ways on a damaged file
            raise gr.Error(f"{html.escape(Path(str(path or 'the picture')).name)} could not be read as an image; "
                           "take the picture again or upload a PNG or JPEG", print_exception=False) from error

    component.preprocess = preprocess  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------ temporary files
class TempFiles:
    """The temporary files each session's handlers wrote, removed when the session ends, and a
    sweep that removes any left behind once older than ``max_age_s``.

    Args:
        root: the temporary folder (default: the system's).
        max_age_s: age at which a leftover ``fewshot-*`` folder is removed.
    """

    def __init__(self, root: str | None = None, max_age_s: float | None = None) -> None:
        self.root = Path(root or tempfile.gettempdir()).resolve()
        self._prefixes = tuple({str(self.root) + os.sep, os.path.abspath(root or tempfile.gettempdir()) + os.sep})
        self.max_age_s = limits().temp_max_age_s if max_age_s is None else max_age_s
        self._by_session: dict[str, set[Path]] = {}
        self._lock = threading.Lock()

    def folder_of(self, value: Any) -> Path | None:
        """The app's temporary folder that ``value`` (a path) lies in, or None."""
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).startswith(self._prefixes):
            return None  # most outputs are not paths: no file system call for them
        try:
            path = Path(value).resolve()
        except (OSError, ValueError):
            return None
        if path.parent == self.root or not path.is_relative_to(self.root):
            return None
        top = self.root / path.relative_to(self.root).parts[0]
        return top if top.name.startswith(TEMP_PREFIX) else None

    def track(self, session: str | None, outputs: Any) -> None:
        """Remember the app's temporary folders among a handler's outputs, under the session."""
        values = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        folders = {folder for folder in map(self.folder_of, _flatten(values)) if folder is not None}
        if folders:
            with self._lock:
                self._by_session.setdefault(session or "", set()).update(folders)

    def end_session(self, session: str | None) -> int:
        """Remove the session's temporary folders; return how many."""
        with self._lock:
            folders = self._by_session.pop(session or "", set())
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        return len(folders)

    def sweep(self, now: float | None = None) -> int:
        """Remove ``fewshot-*`` folders and files older than ``max_age_s``; return how many."""
        now = time.time() if now is None else now
        removed = 0
        for entry in self.root.glob(TEMP_PREFIX + "*"):
            try:
                if now - entry.stat().st_mtime <= self.max_age_s:
                    continue
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed += 1
            except OSError:
                continue
        return removed

    def start_sweeping(self, every_s: float) -> threading.Thread:
        """Sweep in a daemon thread every ``every_s`` seconds."""

        def loop() -> None:
            while True:
                time.sleep(every_s)
                self.sweep()

        thread = threading.Thread(target=loop, name="fewshot-temp-sweep", daemon=True)
        thread.start()
        return thread


def _flatten(values: Iterable[Any]) -> Iterable[Any]:
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _flatten(value)
        elif isinstance(value, dict):
            yield from _flatten(list(value.values()))
        else:
            yield getattr(value, "value", value) if isinstance(value, gr.components.Component) else value


def _session_of_request() -> str | None:
    """The Gradio session of the event being handled (None outside of one)."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None)


# ------------------------------------------------------------------------------------------ the app
def guard(demo: gr.Blocks, temp_files: TempFiles | None = None) -> TempFiles:
    """Harden every event of a built app (see the module docstring); return its temporary-file tracker."""
    temp_files = temp_files or TempFiles()
    for block_fn in demo.fns.values():
        if block_fn.fn is None or getattr(block_fn.fn, "_fewshot_guarded", False):
            continue
        handler = readable_errors(block_fn.fn, lambda value: temp_files.track(_session_of_request(), value))
        handler._fewshot_guarded = True  # type: ignore[attr-defined]
        block_fn.fn = handler
    for block in demo.blocks.values():
        if isinstance(block, gr.Image):
            guard_image_input(block)
    return temp_files


# ------------------------------------------------------------------------------------------ sessions
class SessionGuard:
    """ASGI middleware: a Gradio session belongs to the browser or client that first used it.

    Every response to a request without the owner cookie sets a new random one (HttpOnly). The first
    request that names a session hash (in the query, the path, or a JSON body) binds the session to
    that request's cookie; without one, to "no cookie" and to the cookie its response sets (so a
    client that keeps cookies stays in the session it opened). Later requests naming it with another
    cookie get 403.
    Knowing a session id is then not enough to read its results, fetch its files or stop its run.
    JSON bodies larger than ``max_body_bytes`` get 413 before they are read whole.

    Args:
        app: the ASGI app.
        max_sessions: bindings kept (least recently used first out).
        max_body_bytes: largest JSON request body (default ``limits().max_request_mb``).
    """

    COOKIE = "fewshot_owner"

    def __init__(self, app: Any, max_sessions: int = 100_000, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.max_sessions = max_sessions
        self.max_body_bytes = int(limits().max_request_mb * 2**20) if max_body_bytes is None else max_body_bytes
        self._owners: OrderedDict[str, tuple[str, ...]] = OrderedDict()  # session -> the owners let in
        self._lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        owner = _cookie(headers.get("cookie", ""), self.COOKIE)
        sessions = _sessions_in_url(scope)
        body = b""
        if scope.get("method") == "POST" and headers.get("content-type", "").startswith("application/json"):
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                await _refuse(send, 413, self._too_large())
                return
            body, complete = await _read_body(receive, self.max_body_bytes)
            if not complete:
                await _refuse(send, 413, self._too_large())
                return
            sessions += _sessions_in_json(body)
        new_owner = None if owner else secrets.token_urlsafe(24)
        for session in sessions:
            if not self._claim(session, (owner,) if owner else ("", new_owner)):
                await _refuse(send, 403, "This session belongs to another browser or client. Reload the page "
                                         "(or create a new client) to start your own session.")
                return
        secure = headers.get("x-forwarded-proto", scope.get("scheme", "http")) == "https"

        async def send_with_cookie(message: dict) -> None:
            if new_owner and message["type"] == "http.response.start":
                attributes = "Secure; SameSite=None; Partitioned" if secure else "SameSite=Lax"
                cookie = f"{self.COOKIE}={new_owner}; Path=/; HttpOnly; {attributes}"
                message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", cookie.encode())])
            await send(message)

        await self.app(scope, _replay(body, receive) if body else receive, send_with_cookie)

    def release(self, session: str | None) -> None:
        """Forget a session's owner (when the session ends)."""
        with self._lock:
            self._owners.pop(session or "", None)

    def _claim(self, session: str, owners: tuple[str, ...]) -> bool:
        """Bind a new session to ``owners``, or say whether ``owners[0]`` (this request's cookie, ""
        for none) is let into a bound one."""
        with self._lock:
            bound = self._owners.get(session)
            if bound is None:
                self._owners[session] = owners
                while len(self._owners) > self.max_sessions:
                    self._owners.popitem(last=False)
                return True
            self._owners.move_to_end(session)
            return any(secrets.compare_digest(allowed, owners[0]) for allowed in bound)

    def _too_large(self) -> str:
        return (f"The request is larger than {self.max_body_bytes / 2**20:g} MB; send fewer or shorter texts per call, "
                "or upload files instead of inlining them")


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and re.fullmatch(r"[A-Za-z0-9_-]{16,64}", value):
            return value
    return None


def _sessions_in_url(scope: dict) -> list[str]:
    found = [str(v) for v in parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [])]
    parts = scope.get("path", "").split("/")
    for marker in ("heartbeat", "stream"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            found.append(parts[parts.index(marker) + 1])
    return [session for session in found if session]


def _sessions_in_json(body: bytes) -> list[str]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    session = payload.get("session_hash") if isinstance(payload, dict) else None
    return [session] if isinstance(session, str) and session else []


async def _read_body(receive: Callable, limit: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Callable) -> Callable:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Callable, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------ session state
def drop_stale_copies(state: Any, app_blocks: dict[int, Any]) -> int:
    """Remove from a session's state the component copies Gradio filed under their own ids.

    A prop update (``gr.skip()``, ``gr.Dropdown(choices=...)``) gives the session a copy of the output
    component, kept under the output's id. When a value follows, Gradio also files that copy under
    the copy's own new id, with the serialised value, and nothing ever removes it: every comparison
    run left its tables, plots and files in the session (10 entries per run), so a long session grew
    without bound. This app renders no components at run time (no ``gr.render``), so every id that is
    not one of the app's own blocks is such a copy.

    Returns:
        How many were removed.
    """
    if len(state.blocks_config.blocks) == len(app_blocks):  # a session's blocks start as the app's and only gain copies
        return 0
    stale = [key for key in state.blocks_config.blocks if key not in app_blocks]
    for key in stale:
        del state.blocks_config.blocks[key]
        state.config_values.pop(key, None)
    return len(stale)


# ------------------------------------------------------------------------------------------ launching
class GuardedBlocks(gr.Blocks):
    """``gr.Blocks`` whose ``queue`` and ``launch`` apply the app's limits and install ``SessionGuard``.

    ``queue()`` defaults to ``limits().max_queue`` waiting requests; ``launch()`` to the upload limit
    (``max_file_size``), the session guard, a sweep of leftover temporary files, and malloc
    settings that keep a long-running server's memory flat (``allocator.keep_memory_flat``). Everything can
    still be overridden by arguments, as with ``gr.Blocks``. After each event's outputs, the
    session's state drops the copies Gradio would otherwise keep forever (``drop_stale_copies``).
    """

    temp_files: TempFiles | None = None
    sessions: SessionGuard | None = None

    def queue(self, status_update_rate: Any = "auto", api_open: bool | None = None, max_size: int | None = None,
              *, default_concurrency_limit: Any = 2) -> "GuardedBlocks":
        return super().queue(status_update_rate, api_open, max_size or limits().max_queue,
                             default_concurrency_limit=default_concurrency_limit)

    async def postprocess_data(self, block_fn: Any, predictions: Any, state: Any) -> list[Any]:
        try:
            return await super().postprocess_data(block_fn, predictions, state)
        finally:
            if state is not None:  # on the event loop, between two events' steps: nothing else is mid-update
                drop_stale_copies(state, self.default_config.blocks)

    def launch(self, *args: Any, app_kwargs: dict[str, Any] | None = None, max_file_size: Any = None,
               **kwargs: Any) -> Any:
        from starlette.middleware import Middleware

        current = limits()
        keep_memory_flat()  # before the first upload is decoded
        app_kwargs = dict(app_kwargs or {})
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(_SessionGuardOf, blocks=self)]
        if self.temp_files is not None:
            self.temp_files.start_sweeping(every_s=max(60.0, min(600.0, self.temp_files.max_age_s / 2)))
        return super().launch(*args, app_kwargs=app_kwargs,
                              max_file_size=max_file_size or int(current.max_upload_mb * 2**20), **kwargs)


class _SessionGuardOf(SessionGuard):
    """The session guard Starlette builds for a ``GuardedBlocks``, which keeps it to release sessions."""

    def __init__(self, app: Any, blocks: GuardedBlocks) -> None:
        super().__init__(app)
        blocks.sessions = self
