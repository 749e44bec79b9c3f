"""Each Gradio workaround of ``fewshot_demo.ui.gradio_fixes``: the upstream behaviour it works around,
shown on plain Gradio, and the fix.

A test named ``test_upstream_...`` FAILS when Gradio's behaviour changes: then the workaround can go
(or must follow the change), and the test with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gradio as gr
import hostile
import httpx
import pytest
from gradio.data_classes import ImageData
from gradio.state_holder import SessionState

from fewshot_demo.ui.blocks import GuardedBlocks
from fewshot_demo.ui.gradio_fixes import (
    DropsStaleCopies,
    check_every_file_payload,
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


# ------------------------------------------------------------------------------------------ refusals before a handler
def _two(first: str, second: str) -> str:
    return first + second


def refusing_app(blocks_class: type[gr.Blocks], release: threading.Event) -> tuple[gr.Blocks, str]:
    """A small app launched with ``blocks_class``: a picture, files, two text inputs, and a slow event
    (one at a time, at most 2 waiting) that holds until ``release`` is set."""
    with blocks_class() as demo:
        picture, files, out = gr.Image(type="filepath"), gr.File(file_count="multiple"), gr.Textbox()
        gr.Button().click(lambda path: "read", picture, out, api_name="picture")
        gr.Button().click(lambda paths: "read", files, out, api_name="files")
        gr.api(_two, api_name="two")
        gr.Button().click(lambda: release.wait(20) and "done", None, out, api_name="slow", concurrency_limit=1)
    _, url, _ = demo.queue(max_size=2).launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    return demo, url


def called(url: str, api: str, data: list, client: httpx.Client | None = None) -> tuple[str, Any]:
    """POST /gradio_api/call/<api>, then read the result: ("complete" or "error", its data), or the refusal."""
    http = client or httpx.Client()
    posted = http.post(url + f"gradio_api/call/{api}", json={"data": data})
    if posted.status_code != 200:
        return f"http {posted.status_code}", posted.json()
    stream = http.get(url + f"gradio_api/call/{api}/{posted.json()['event_id']}", timeout=30).text
    event = next(line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("event: ") and
                 not line.endswith("heartbeat"))
    data_line = [line for line in stream.splitlines() if line.startswith("data: ")][-1]
    return event, json.loads(data_line[len("data: "):])


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


#: What each refused call sends (the upload-less paths exist: their reading is what Gradio refuses).
HOSTILE_CALLS = {
    "a path never uploaded": ("picture", [file_data("/etc/passwd")]),
    "an app file": ("files", [[file_data(str(Path(__file__).resolve()))]]),
    "a URL refused by the host check": ("picture", [{**file_data("http://127.0.0.1:9/x.png"),
                                                     "url": "http://127.0.0.1:9/x.png"}]),
    "a bare data URL": ("picture", ["data:image/png;base64," + base64.b64encode(hostile.png()).decode()]),
    "missing inputs": ("two", ["only one"]),
}


@pytest.fixture(scope="module")
def plain_app():
    release = threading.Event()
    demo, url = refusing_app(gr.Blocks, release)
    yield url, release
    release.set()
    demo.close()


@pytest.mark.parametrize("case", HOSTILE_CALLS)
def test_upstream_what_gradio_refuses_before_a_handler_comes_without_a_message(plain_app, case):
    """Why ``GuardedBlocks.process_api`` goes through ``ui.refusals`` (``tests/test_refusals.py``)."""
    api, data = HOSTILE_CALLS[case]
    assert called(plain_app[0], api, data) == ("error", {"error": None})


def test_upstream_a_full_queue_says_only_its_sizes(plain_app):
    url, release = plain_app
    answers = [httpx.post(url + "gradio_api/call/slow", json={"data": []}) for _ in range(5)]
    release.set()
    refused = [a.json()["detail"] for a in answers if a.status_code == 503]
    assert refused and all(re.fullmatch(r"Queue is full\. Max size is 2 and size is 2\.", r) for r in refused)


def test_upstream_a_file_payload_without_meta_skips_the_upload_check(plain_app, tmp_path):
    """Why ``GuardedBlocks.process_api`` calls ``check_every_file_payload``."""
    outside = hostile.write(tmp_path, "elsewhere.png", hostile.png())  # on the server, never uploaded
    assert called(plain_app[0], "picture", [{"path": str(outside)}]) == ("complete", ["read"])  # opened and read
    assert called(plain_app[0], "picture", [file_data(str(outside))]) == ("error", {"error": None})


def test_every_file_payload_of_a_component_gets_checked():
    image = gr.Image(render=False)  # a component with a data model
    inputs = [{"path": "/etc/passwd"}, [{"path": "/x", "meta": {"_type": "other"}}]]
    assert check_every_file_payload([image, image], inputs) == 2
    assert all(item["meta"] == {"_type": "gradio.FileData"} for item in (inputs[0], inputs[1][0]))
    assert check_every_file_payload([gr.Textbox(render=False)], [{"path": "/etc/passwd"}]) == 0  # no data model


#: Calls a route refuses before any event is queued: (method, path, body).
ROUTE_REFUSALS = {
    "an unknown parameter": ("gradio_api/call/v2/two", {"first": "a", "nope": 1}),
    "an unknown endpoint": ("gradio_api/call/nope", {"data": []}),
    "an unknown event number": ("gradio_api/queue/join", {"data": [], "fn_index": 99999, "session_hash": "s-99"}),
}


@pytest.mark.parametrize("case", ROUTE_REFUSALS)
def test_upstream_a_route_that_raises_answers_a_bare_internal_server_error(plain_app, case):
    """Why ``GuardedBlocks`` installs ``ui.refusals.RouteRefusals``."""
    path, body = ROUTE_REFUSALS[case]
    answer = httpx.post(plain_app[0] + path, json=body)
    assert (answer.status_code, answer.text) == (500, "Internal Server Error")
