"""Each Gradio workaround of ``fewshot_demo.ui.gradio_fixes``: the upstream behaviour it works around,
shown on plain Gradio, and the fix.

A test named ``test_upstream_...`` FAILS when Gradio's behaviour changes: then the workaround can go
(or must follow the change), and the test with it.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import hostile
import pytest
from gradio.data_classes import ImageData
from gradio.state_holder import SessionState

from fewshot_demo.ui.blocks import GuardedBlocks
from fewshot_demo.ui.gradio_fixes import (
    DropsStaleCopies,
    deleted_gallery_file,
    drop_stale_copies,
    guard_image_input,
    session_of_request,
)


def _run(coroutine):
    """Run a coroutine to its end on a loop of its own: the browser tests leave this thread's loop running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# ------------------------------------------------------------------------------------------ session state
def _update_then_value(blocks_class: type[gr.Blocks]) -> tuple[gr.Blocks, SessionState]:
    """An event whose handler first sends a prop update of its output, then a value."""
    with blocks_class() as demo:
        box = gr.Textbox()
        button = gr.Button()
        button.click(lambda: None, None, box)
    event = next(iter(demo.fns.values()))
    state = SessionState(demo)
    _run(demo.postprocess_data(event, gr.Textbox(label="a new label"), state))
    _run(demo.postprocess_data(event, "a value", state))
    return demo, state


def test_upstream_a_prop_update_then_a_value_leaves_a_copy_in_the_session_for_good():
    demo, state = _update_then_value(gr.Blocks)
    copies = set(state.blocks_config.blocks) - set(demo.default_config.blocks)
    assert len(copies) == 1  # the output's copy, filed under its own new id, with the value
    assert drop_stale_copies(state, demo.default_config.blocks) == 1
    assert set(state.blocks_config.blocks) == set(demo.default_config.blocks)
    assert state[box_id(demo)].label == "a new label"  # the session still shows the update


@pytest.mark.parametrize("blocks_class", [DropsStaleCopies, GuardedBlocks])
def test_the_apps_blocks_drop_the_copies_after_every_event(blocks_class):
    demo, state = _update_then_value(blocks_class)
    assert set(state.blocks_config.blocks) == set(demo.default_config.blocks)
    assert set(state.config_values) <= set(demo.default_config.blocks)


def box_id(demo: gr.Blocks) -> int:
    return next(block._id for block in demo.blocks.values() if isinstance(block, gr.Textbox))


# ------------------------------------------------------------------------------------------ image inputs
@pytest.fixture
def pictures(tmp_path: Path) -> dict[str, Path]:
    return {
        # 8000 x 8000 = 64 megapixels in a header over a few bytes of pixels: more than the app's
        # 40-megapixel limit, less than Pillow's own bomb check, so nothing but the app refuses it.
        "bomb": hostile.write(tmp_path, "bomb.png", hostile.png_bomb(8000, 8000)),
        "damaged": hostile.write(tmp_path, "damaged.png", hostile.png()[:40]),
    }


def _payload(path: Path) -> ImageData:
    return ImageData(path=str(path), orig_name=path.name)


def test_upstream_an_image_input_takes_any_size_and_fails_with_a_bare_error(pictures):
    as_path = gr.Image(type="filepath", image_mode=None, render=False)
    assert as_path.preprocess(_payload(pictures["bomb"])) == str(pictures["bomb"])  # no size check at all
    as_picture = gr.Image(type="pil", render=False)
    with pytest.raises(Exception) as raised:
        as_picture.preprocess(_payload(pictures["damaged"]))
    assert not isinstance(raised.value, gr.Error)  # Pillow's own exception: the page shows a bare "Error"


def test_a_guarded_image_input_refuses_a_bomb_from_its_header_and_names_a_damaged_file(pictures):
    as_path = guard_image_input(gr.Image(type="filepath", image_mode=None, render=False))
    with pytest.raises(gr.Error, match="8000x8000 pixels, over the 40-megapixel limit"):
        as_path.preprocess(_payload(pictures["bomb"]))
    as_picture = guard_image_input(gr.Image(type="pil", render=False))
    with pytest.raises(gr.Error, match="damaged.png"):
        as_picture.preprocess(_payload(pictures["damaged"]))
    assert as_picture.preprocess(None) is None


# ------------------------------------------------------------------------------------------ gallery delete
GALLERY_DELETE = {"file": {"path": "/uploads/b.jpg", "orig_name": "b.jpg"}, "index": 1}  # what the gallery sends


def test_upstream_deleted_file_data_cannot_read_what_a_gallery_sends():
    with pytest.raises(Exception):
        gr.DeletedFileData(None, GALLERY_DELETE)
    assert gr.DeletedFileData(None, GALLERY_DELETE["file"]).file.path == "/uploads/b.jpg"  # gr.File's shape


def test_the_deleted_file_of_a_gallery_is_read_from_the_event_data():
    assert deleted_gallery_file(gr.EventData(None, GALLERY_DELETE)) == "/uploads/b.jpg"
    assert deleted_gallery_file(gr.EventData(None, {"index": 1})) is None
    assert deleted_gallery_file(None) is None


# ------------------------------------------------------------------------------------------ the request
def test_upstream_a_handler_without_a_request_parameter_can_still_read_its_session():
    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button().click(lambda: session_of_request(), None, box)
    event = next(iter(demo.fns.values()))
    request = gr.Request(session_hash="session-of-this-event")
    output = _run(demo.process_api(event, [], SessionState(demo), request=request))
    assert output["data"] == ["session-of-this-event"]
    assert session_of_request() is None  # outside an event


# ------------------------------------------------------------------------------------------ elsewhere
def test_upstream_an_endpoints_return_type_written_as_a_string_is_lost_on_the_api_page():
    """Why ``ui.api`` has no ``from __future__ import annotations``."""

    def typed(handle: str) -> dict[str, int]:
        return {}

    def as_strings(handle: str) -> dict[str, int]:
        return {}

    typed.__annotations__ = {"handle": str, "return": dict[str, int]}  # this file's own future import aside
    as_strings.__annotations__ = {"handle": "str", "return": "dict[str, int]"}  # what the future import makes
    with gr.Blocks() as demo:
        gr.api(typed, api_name="typed")
        gr.api(as_strings, api_name="as_strings")
    endpoints = demo.get_api_info()["named_endpoints"]
    assert endpoints["/typed"]["returns"][0]["python_type"]["type"] == "dict(str, int)"
    assert endpoints["/as_strings"]["returns"][0]["python_type"]["type"] == "Any"


def test_upstream_a_session_id_alone_lets_anyone_join_the_session():
    """Why the app installs ``ui.sessions.SessionGuard`` (``tests/test_api.py`` checks that it refuses)."""
    import httpx

    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button().click(lambda: "the owner's result", None, box, api_name="result")
    _, url, _ = demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        index = next(d["id"] for d in httpx.get(url + "config").json()["dependencies"] if d.get("api_name") == "result")
        stranger = httpx.Client(base_url=url)
        joined = stranger.post("gradio_api/queue/join", json={"data": [], "fn_index": index, "session_hash": "the-owners"})
        assert joined.status_code == 200  # nothing ties the session to whoever opened it
    finally:
        demo.close()
