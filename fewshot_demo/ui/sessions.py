"""Each Gradio session belongs to the browser or client that opened it (``SessionGuard``).

Gradio lets anyone who knows a session's id join its queue, read its results and cancel its
events; the id travels in URLs and request bodies. ``SessionGuard`` is an ASGI middleware (installed
by ``ui.blocks.GuardedBlocks.launch``) that binds each session to a random HttpOnly cookie, so a
request that names someone else's session (to read its results, fetch its saved files, or press
its Stop) is refused; it also refuses oversized request bodies before they are read whole.

It finds the session ids the way the server reads them, not by the request's spelling: every
body (bar the streamed uploads) is parsed as JSON whatever its Content-Type says, with the parser
FastAPI uses, so any body the server reads as JSON is seen here too; every ``session_hash`` in the
query string counts (the server reads the last); event ids (in paths and bodies) count as the
session they belong to. ``GuardedBlocks`` checks the queue's parsed session id once more
(``owner_of_request``).

Cookieless clients: a session a client names before it has the cookie is bound to the cookie its
first answer sets. A later request for that session without the cookie is refused with a message
(so a stranger who sends no cookie reads nothing). A call without a ``session_hash`` runs in a
session of its own, named by its unguessable event id, which only the caller is handed.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fewshot_demo.config.settings import limits

#: The request scope's key for the owner cookie a request is let in with (its own, or the one its answer sets).
OWNER_SCOPE_KEY = "fewshot_owner"
#: Routes whose bodies are multipart uploads, streamed to disk by Gradio; they name no session.
STREAMED_ROUTES = ("upload", "process_recording")
API_SEGMENT = "gradio_api"

NOT_YOURS = ("This session belongs to another browser or client. Reload the page (or create a new client) "
             "to start your own session.")
NO_COOKIE = ("This session belongs to another browser or client, and this request carries no owner cookie. "
             "In a browser, allow cookies for this site and reload the page; from a script, keep the cookies of "
             "the first answer (httpx.Client, requests.Session and gradio_client do), or call "
             "/gradio_api/call/<endpoint> without a session_hash to get a session of your own.")


class SessionGuard:
    """ASGI middleware: a Gradio session belongs to the browser or client that first used it.

    Every response to a request without the owner cookie sets a new random one (HttpOnly). The first
    request that names a session (in the query, the path, the body, or through one of its event ids)
    binds it to that request's cookie, or, without one, to the cookie its answer sets. Later requests
    naming it with another cookie, or with none, get 403 with a message saying what to do.
    Knowing a session id is then not enough to read its results, fetch its files or stop its run.
    Bodies larger than ``max_body_bytes`` get 413 before they are read whole.

    Args:
        app: the ASGI app.
        max_sessions: bindings kept (least recently used first out).
        max_body_bytes: largest request body (default ``limits().max_request_mb``); uploads are not bound by it.
        session_of_event: the session an event id belongs to (None: unknown), to check event routes.
    """

    COOKIE = "fewshot_owner"

    def __init__(self, app: Any, max_sessions: int = 100_000, max_body_bytes: int | None = None,
                 session_of_event: Callable[[str], str | None] | None = None) -> None:
        self.app = app
        self.max_sessions = max_sessions
        self.max_body_bytes = int(limits().max_request_mb * 2**20) if max_body_bytes is None else max_body_bytes
        self.session_of_event = session_of_event or (lambda event_id: None)
        self._owners: OrderedDict[str, str] = OrderedDict()  # session -> its owner cookie
        self._lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        owner = _cookie([value.decode("latin-1") for key, value in headers if key.lower() == b"cookie"], self.COOKIE)
        new_owner = None if owner else secrets.token_urlsafe(24)
        sessions, events = _names_in_url(scope)
        downstream = receive
        if not _streamed(scope):
            declared = next((value for key, value in headers if key.lower() == b"content-length"), b"")
            if declared.strip().isdigit() and int(declared) > self.max_body_bytes:
                await _refuse(send, 413, self._too_large())
                return
            body, complete = await _read_body(receive, self.max_body_bytes)
            if not complete:
                await _refuse(send, 413, self._too_large())
                return
            downstream = _replay(body, receive)  # the app reads the body (possibly empty) from here
            in_body = _names_in_json(body)
            sessions += in_body["session_hash"]
            events += in_body["event_id"]
        for event_id in events:
            session = self.session_of_event(event_id)
            if session and session != event_id:  # a session of its own is named by its unguessable event id
                sessions.append(session)
        for session in sessions:
            refusal = self.let_in(session, owner, new_owner)
            if refusal:
                await _refuse(send, 403, refusal)
                return
        scope = dict(scope)
        scope[OWNER_SCOPE_KEY] = owner or new_owner
        secure = dict(headers).get(b"x-forwarded-proto", scope.get("scheme", "http").encode()) == b"https"

        async def send_with_cookie(message: dict) -> None:
            if new_owner and message["type"] == "http.response.start":
                attributes = "Secure; SameSite=None; Partitioned" if secure else "SameSite=Lax"
                cookie = f"{self.COOKIE}={new_owner}; Path=/; HttpOnly; {attributes}"
                message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", cookie.encode())])
            await send(message)

        await self.app(scope, downstream, send_with_cookie)

    def let_in(self, session: str, owner: str | None, new_owner: str | None = None) -> str | None:
        """Bind a new session to ``owner`` (or, without one, ``new_owner``, the cookie the answer sets);
        for a bound one, None if ``owner`` is its owner, else the refusal's message."""
        with self._lock:
            bound = self._owners.get(session)
            if bound is None:
                if owner or new_owner:
                    self._owners[session] = owner or new_owner  # type: ignore[assignment]
                    while len(self._owners) > self.max_sessions:
                        self._owners.popitem(last=False)
                return None
            self._owners.move_to_end(session)
        if owner and secrets.compare_digest(bound, owner):
            return None
        return NOT_YOURS if owner else NO_COOKIE

    def release(self, session: str | None) -> None:
        """Forget a session's owner (when the session ends)."""
        with self._lock:
            self._owners.pop(session or "", None)

    def _too_large(self) -> str:
        return (f"The request is larger than {self.max_body_bytes / 2**20:g} MB; send fewer or shorter texts per call, "
                "or upload files instead of inlining them")


def owner_of_request(request: Any) -> str | None:
    """The owner cookie ``SessionGuard`` let a (Starlette) request in with, or None outside the guard."""
    scope = getattr(request, "scope", None)
    return scope.get(OWNER_SCOPE_KEY) if isinstance(scope, dict) else None


def _cookie(headers: list[str], name: str) -> str | None:
    for header in headers:
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == name and re.fullmatch(r"[A-Za-z0-9_-]{16,64}", value):
                return value
    return None


def _api_parts(scope: dict) -> list[str]:
    """The path's segments after ``gradio_api`` (empty for other routes)."""
    parts = scope.get("path", "").split("/")
    return parts[parts.index(API_SEGMENT) + 1:] if API_SEGMENT in parts else []


def _streamed(scope: dict) -> bool:
    parts = [part for part in _api_parts(scope) if part]
    return scope.get("method") == "POST" and len(parts) == 1 and parts[0] in STREAMED_ROUTES


def _names_in_url(scope: dict) -> tuple[list[str], list[str]]:
    """Session ids and event ids a URL names: ``?session_hash=`` (every one: the server reads the last),
    ``heartbeat/{session}``, ``stream/{session}/...``, ``stream/{event}[/close]``, ``call/[v2/]{api}/{event}``."""
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    sessions = [value for key, value in query if key == "session_hash"]
    events: list[str] = []
    parts = _api_parts(scope)
    route, rest = (parts[0], parts[1:]) if parts else ("", [])
    if route == "heartbeat" and rest:
        sessions.append(rest[0])
    elif route == "stream" and rest:
        named_event = len(rest) == 1 or (len(rest) == 2 and rest[1] == "close")
        (events if named_event else sessions).append(rest[0])
    elif route == "call" and len(rest) >= 2:
        events.append(rest[-1])
    return [s for s in sessions if s], [e for e in events if e]


def _names_in_json(body: bytes) -> dict[str, list[str]]:
    """The ``session_hash`` and ``event_id`` of a body, read as FastAPI reads a JSON body (``json.loads``),
    whatever the Content-Type says: a body the server parses is never missed."""
    found: dict[str, list[str]] = {"session_hash": [], "event_id": []}
    if not body:
        return found
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # the server cannot read it either
        return found
    if isinstance(payload, dict):
        for key, names in found.items():
            value = payload.get(key)
            if isinstance(value, str) and value:
                names.append(value)
    return found


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
