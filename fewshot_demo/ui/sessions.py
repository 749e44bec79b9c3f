"""Each Gradio session belongs to the browser or client that opened it (``SessionGuard``).

Gradio lets anyone who knows a session's id join its queue, read its results and cancel its
events; the id travels in URLs and request bodies. ``SessionGuard`` is an ASGI middleware (installed
by ``ui.blocks.GuardedBlocks.launch``) that binds each session to a random HttpOnly cookie, so a
request that names someone else's session (to read its results, fetch its saved files, or press
its Stop) is refused; it also refuses oversized JSON bodies before they are read whole.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import OrderedDict
from typing import Any, Callable
from urllib.parse import parse_qs

from fewshot_demo.config.settings import limits


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
