"""Where the app works around a Gradio bug or limitation: each fix names the upstream behaviour.

``tests/test_gradio_fixes.py`` shows each behaviour on plain Gradio: when one of its tests fails,
Gradio has changed, and the fix here can go (or must follow the change).

- ``drop_stale_copies`` (``DropsStaleCopies``, the app's Blocks): a session's state keeps the
  component copies a prop update makes, under new ids, forever (``Blocks.postprocess_data``).
- ``guard_image_input``: an image input's ``preprocess`` opens and decodes the file before any
  size check, and fails on a damaged file with Pillow's bare exception, not a message.
- ``guard_number_input``: ``gr.Slider.preprocess`` compares what it is sent with its bounds as
  it came, so a string from a raw API call fails with a TypeError, not a message.
- ``deleted_gallery_file``: a gallery's delete event sends ``{"file": FileData, "index": i}``,
  which ``gr.DeletedFileData`` (made for ``gr.File``, a bare FileData) cannot read.
- ``check_every_file_payload``: Gradio checks that a file argument was uploaded only when its
  payload carries FileData's ``meta``; a ``{"path": ...}`` without it reaches the component as it
  is, so a file component would open any file on the server.
- ``session_of_request``: Gradio hands an event's request only to a handler that declares a
  ``gr.Request`` parameter; the temporary-file tracker needs it for every handler, so it reads
  Gradio's context variable.

What Gradio refuses before a handler runs (paths never uploaded, URLs, missing inputs, a full
queue) gets its message in ``ui.refusals``, through ``GuardedBlocks``; the upstream behaviour is
pinned here too (``test_upstream_what_gradio_refuses_before_a_handler_comes_without_a_message``).

Two more limitations shape code elsewhere, each named where it bites and pinned by a test there:

- ``gr.api`` reads an endpoint's return type from its annotation object: under ``from __future__
  import annotations`` (a string) the API page shows no type, so ``ui.api`` goes without it.
- Gradio binds a session to nothing but its id, which travels in URLs and request bodies: anyone
  who knows it can join its queue, read its results and cancel its events. ``ui.sessions.SessionGuard``
  binds each session to the browser or client that opened it.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import LocalContext
from gradio_client.utils import is_file_obj_with_meta

from fewshot_demo.data.images import check_image_header
from fewshot_demo.ui.messages import user_message


def drop_stale_copies(state: Any, app_blocks: dict[int, Any]) -> int:
    """Remove from a session's state the component copies Gradio filed under their own ids.

    Upstream: a prop update (``gr.skip()``, ``gr.Dropdown(choices=...)``) gives the session a copy of
    the output component, kept under the output's id. When a value follows, Gradio also files that
    copy under the copy's own new id, with the serialised value, and nothing ever removes it: every
    comparison run left its tables, plots and files in the session (10 entries per run), so a long
    session grew without bound. This app renders no components at run time (no ``gr.render``), so
    every id that is not one of the app's own blocks is such a copy.

    Args:
        state: a session's ``SessionState``.
        app_blocks: the app's blocks by id (``Blocks.default_config.blocks``).

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


class DropsStaleCopies(gr.Blocks):
    """``gr.Blocks`` whose sessions drop the copies of ``drop_stale_copies`` after each event's outputs."""

    async def postprocess_data(self, block_fn: Any, predictions: Any, state: Any) -> list[Any]:
        try:
            return await super().postprocess_data(block_fn, predictions, state)
        finally:
            if state is not None:  # on the event loop, between two events' steps: nothing else is mid-update
                drop_stale_copies(state, self.default_config.blocks)


def guard_image_input(component: gr.Image) -> gr.Image:
    """Check an image input's file (size on disk, pixels from its header) before Gradio decodes it,
    and turn a failure of Gradio's own decoding into a message; return the component.

    Upstream: ``gr.Image.preprocess`` opens the file with Pillow at once (and decodes it for
    ``type="pil"``), so a decompression bomb is decoded before anything can refuse it, and a damaged
    file fails with Pillow's own exception, which the user sees as a bare "Error".
    """
    original = component.preprocess

    @functools.wraps(original)
    def preprocess(payload: Any) -> Any:
        path = getattr(payload, "path", None) or (payload.get("path") if isinstance(payload, dict) else None)
        if path:
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
    return component


def guard_number_input(component: gr.Slider, what: str) -> gr.Slider:
    """Refuse a value that is not a number with a message naming ``what``; return the component.

    Upstream: ``gr.Slider.preprocess`` checks the payload against its minimum and maximum as it came
    (``Number.raise_if_out_of_bounds``), so ``"abc"`` or ``null`` from a raw API call fails with a TypeError.
    """
    original = component.preprocess

    @functools.wraps(original)
    def preprocess(payload: Any) -> Any:
        if isinstance(payload, bool) or not isinstance(payload, (int, float)):  # None too: it fails the same way
            raise gr.Error(f"{what} must be a number, not {html.escape(str(payload)[:40])!r}", print_exception=False)
        return original(payload)

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def deleted_gallery_file(event: gr.EventData | None) -> str | None:
    """The path of the file a gallery's delete event removed, or None.

    Upstream: the gallery sends ``{"file": FileData, "index": i}``; ``gr.DeletedFileData`` expects a
    bare FileData and fails on it, so the generic event's raw data (``EventData._data``) is read.
    """
    data = getattr(event, "_data", None)
    file = data.get("file") if isinstance(data, dict) else None
    path = file.get("path") if isinstance(file, dict) else None
    return path if isinstance(path, str) and path else None


FILE_DATA_META = {"_type": "gradio.FileData"}


def check_every_file_payload(components: list[Any], inputs: list[Any]) -> int:
    """Give FileData's ``meta`` to every ``{"path": ...}`` payload of a component with a data model, so that
    Gradio checks it was uploaded (and refuses it otherwise); returns how many were marked.

    Upstream: ``processing_utils.async_move_files_to_cache`` finds file payloads by their ``meta``
    (``client_utils.is_file_obj_with_meta``); one without it skips the upload-folder check and the
    component's data model takes it as it is, so ``gr.Image.preprocess`` opened ``{"path": "/etc/passwd"}``
    and a picture of another session's unpacked zip could be read into a stranger's support set.
    Components without a data model (``gr.api``'s inputs) are left alone: ``ui.api.upload`` checks those.
    """
    marked = 0
    for component, value in zip(components, inputs):
        if getattr(component, "data_model", None) is None:
            continue
        pending = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                if isinstance(item.get("path"), str) and not is_file_obj_with_meta(item):
                    item["meta"] = dict(FILE_DATA_META)
                    marked += 1
                pending.extend(v for k, v in item.items() if k != "meta")
            elif isinstance(item, list):
                pending.extend(item)
    return marked


def session_of_request() -> str | None:
    """The Gradio session of the event being handled (None outside of one).

    Upstream: the request reaches only handlers that declare a ``gr.Request`` parameter; this reads
    the context variable Gradio sets for every event (``gradio.context.LocalContext.request``).
    """
    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None)
