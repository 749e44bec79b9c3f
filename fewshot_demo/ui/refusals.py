"""A message for every refusal Gradio raises before an event's handler runs.

Gradio checks an event's inputs before the handler sees them, and what it raises there is no
``gr.Error``: the caller got ``{"error": null}`` and the browser a bare "Error". ``GuardedBlocks``
(``ui.blocks``) checks the inputs first (``check_inputs``) and turns what Gradio still raises into
a message that says what to do (``refusal``):

- a call that sends fewer inputs than the event takes (``Blocks.validate_inputs``);
- a file argument naming a URL: Gradio would download it from the server (``processing_utils``,
  refused by its host check for private addresses); the app downloads nothing;
- a file argument naming a path never uploaded to this server (``processing_utils._check_allowed``,
  ``InvalidPathError``);
- an input that is not in the shape of its component, such as a picture sent as a bare data URL
  (the component's data model, a pydantic ``ValidationError``);
- a full queue (``queueing.Queue.push``): ``queue_full_message``;
- what a route raises before any event is queued (an unknown parameter of ``/call/v2/<name>``, an
  unknown event number), which Starlette answers with a bare "Internal Server Error":
  ``RouteRefusals``.

Anything else that is no ``gr.Error`` becomes the incident message of ``ui.messages`` (logged).
``tests/test_refusals.py`` shows each upstream refusal and its message.
"""

from __future__ import annotations

import html
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import gradio as gr
import pydantic
from gradio.exceptions import Error as GradioError
from gradio.exceptions import InvalidPathError
from gradio.route_utils import FnIndexInferError
from gradio_client.utils import is_file_obj_with_meta, is_http_url_like

from fewshot_demo.ui.messages import gradio_error, scrub, user_text

HOW_TO_SEND_A_FILE = ("upload the file first (gradio_client: handle_file(path); HTTP: POST it to /gradio_api/upload "
                      "and send the path it answers as {\"path\": ..., \"meta\": {\"_type\": \"gradio.FileData\"}}), "
                      "or send a picture to /predict as a data URL string")
NOT_ENOUGH_INPUTS = "didn't receive enough input values"
UNUPLOADED_PATH = re.compile(r"Cannot move (.+?) to the gradio cache dir")


def check_inputs(block_fn: Any, inputs: list[Any]) -> None:
    """Refuse, with a message, what Gradio would refuse or do badly: too few inputs, files named by URL.

    Raises:
        gr.Error: saying what to send instead.
    """
    expected = list(getattr(block_fn, "inputs", []))
    if len(inputs) < len(expected):
        names = ", ".join(_input_names(block_fn))
        raise _error(f"{_event_name(block_fn)} takes {len(expected)} inputs, in this order: {names}; this call sent "
                     f"{len(inputs)}. Send all {len(expected)} (null for an optional one); /gradio_api/info lists them")
    for file in _files(inputs):
        path = file.get("path")
        if isinstance(path, str) and is_http_url_like(path):
            raise _error(f"{_short(path)}: the server does not download files from URLs; download it yourself and "
                         f"{HOW_TO_SEND_A_FILE}")


def refusal(error: Exception, block_fn: Any) -> gr.Error:
    """The message for an error Gradio raised in an event's processing (a ``gr.Error`` is kept as it is)."""
    if isinstance(error, GradioError):
        return error  # type: ignore[return-value]
    if isinstance(error, InvalidPathError):
        named = UNUPLOADED_PATH.search(str(error))
        what = _short(named.group(1)) if named else "a file of this call"
        return _error(f"{what} was never uploaded to this server, so it is not read: {HOW_TO_SEND_A_FILE}")
    if isinstance(error, pydantic.ValidationError):
        return _error(f"An input of {_event_name(block_fn)} is not in the form its component takes: send a file or "
                      f"a picture as an uploaded file, not as a bare data URL or text: {HOW_TO_SEND_A_FILE}")
    if isinstance(error, ValueError) and NOT_ENOUGH_INPUTS in str(error):
        return _error(f"{_event_name(block_fn)} did not get all its inputs; /gradio_api/info lists them, in order")
    return gradio_error(error)


def queue_full_message(max_size: int | None) -> str:
    """What a caller refused by a full queue reads (Gradio's says only the sizes)."""
    return (f"The server is busy: {max_size} requests are already waiting, the most it holds. Try again in a "
            "minute (in the page: click again; from a script: retry after a pause).")


class RouteRefusals:
    """ASGI middleware: an exception a Gradio route raises before it answers becomes a JSON refusal
    ``{"error": message}`` (400 for a call that does not fit its endpoint, 404 for an unknown event,
    else 500 with the incident message, logged), not a bare "Internal Server Error"."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as error:  # every refusal gets a message
            if started:
                raise
            status, message = route_refusal(error)
            body = json.dumps({"error": message}).encode()
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def route_refusal(error: Exception) -> tuple[int, str]:
    """The status and message for an exception a route raised before answering."""
    if isinstance(error, TypeError) and "argument" in str(error):  # client_utils.construct_args
        return 400, f"{scrub(str(error))} (/gradio_api/info lists each endpoint's parameters)"
    if isinstance(error, (KeyError, FnIndexInferError)):  # route_utils.get_fn: no event of that number or name
        return 404, ("No endpoint or event of that name or number: /gradio_api/info lists the endpoints, "
                     "and a page's events come from its /config")
    return 500, user_text(error)


def _error(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def _event_name(block_fn: Any) -> str:
    """``/name`` of an API endpoint; "this event" for a private one (its generated name means nothing to a user)."""
    api_name = getattr(block_fn, "api_name", None)
    private = getattr(block_fn, "api_visibility", "public") == "private"
    return f"/{api_name}" if isinstance(api_name, str) and api_name and not private else "this event"


def _input_names(block_fn: Any) -> list[str]:
    """The handler's parameter names where they match the inputs one to one, else the components' labels."""
    components = list(block_fn.inputs)
    try:
        parameters = [p.name for p in inspect.signature(block_fn.fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        parameters = []
    if len(parameters) == len(components):
        return parameters
    return [str(getattr(c, "label", None) or type(c).__name__.lower()) for c in components]


def _files(value: Any) -> Iterator[dict]:
    """The FileData payloads in an input, as Gradio finds them (dicts with a ``meta`` of FileData), at any depth."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if is_file_obj_with_meta(item):
                yield item
            else:
                pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)


def _short(path_or_url: str) -> str:
    """A file's name, HTML-escaped: never a server path (nor the whole of a long URL)."""
    name = PurePosixPath(path_or_url.split("?", 1)[0].rstrip("/")).name or path_or_url[:60]
    return html.escape(name[:80])
