"""Every refusal Gradio raises before a handler runs carries a message that says what to do.

The same hostile calls as ``tests/test_gradio_fixes.py`` (where plain Gradio answers them with
``{"error": null}``), sent to the app's Blocks through raw HTTP and gradio_client, and to the app.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_gradio_fixes import HOSTILE_CALLS, ROUTE_REFUSALS, called, file_data, refusing_app

from fewshot_demo.ui.blocks import GuardedBlocks
from fewshot_demo.ui.refusals import check_inputs, refusal

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "a path never uploaded": "passwd was never uploaded to this server, so it is not read: upload the file first",
    "an app file": "test_gradio_fixes.py was never uploaded to this server",
    "a URL refused by the host check": "x.png: the server does not download files from URLs; download it yourself",
    "a bare data URL": "An input of /picture is not in the form its component takes: send a file or a picture as "
                       "an uploaded file, not as a bare data URL",
    "missing inputs": "/two takes 2 inputs, in this order: first, second; this call sent 1. Send all 2",
}


@pytest.fixture(scope="module")
def guarded_app():
    release = threading.Event()
    demo, url = refusing_app(GuardedBlocks, release)
    yield url, release
    release.set()
    demo.close()


@pytest.mark.parametrize("case", HOSTILE_CALLS)
def test_each_refusal_before_a_handler_says_what_to_do(guarded_app, case):
    api, data = HOSTILE_CALLS[case]
    event, answer = called(guarded_app[0], api, data)
    assert event == "error" and answer["error"].startswith(EXPECTED[case]), answer
    assert "/etc" not in answer["error"] and str(ROOT) not in answer["error"]  # never a server path


def test_another_sessions_unpacked_zip_is_refused_by_name(guarded_app):
    with tempfile.TemporaryDirectory(prefix="fewshot-zip-") as unpacked:  # where the app unpacks a zip
        photo = Path(unpacked) / "cat1.png"
        photo.write_bytes(b"not read")
        event, answer = called(guarded_app[0], "files", [[file_data(str(photo))]])
    assert event == "error" and answer["error"].startswith("cat1.png was never uploaded to this server")
    assert unpacked not in answer["error"]


def test_a_full_queue_says_to_try_again(guarded_app):
    url, release = guarded_app
    answers = [httpx.post(url + "gradio_api/call/slow", json={"data": []}) for _ in range(5)]
    release.set()
    refused = [a.json()["detail"] for a in answers if a.status_code == 503]
    assert refused and all(r.startswith("The server is busy: 2 requests are already waiting") for r in refused)
    assert all("Try again in a minute" in r for r in refused)


def test_gradio_client_reads_the_messages(guarded_app):
    client = Client(guarded_app[0], verbose=False)
    with pytest.raises(AppError, match="the server does not download files from URLs"):
        client.predict(handle_file("http://127.0.0.1:9/x.png"), api_name="/picture")
    with pytest.raises(AppError, match="was never uploaded to this server"):
        client.predict({"path": "/etc/passwd"}, api_name="/picture")  # no meta: gradio_client uploads nothing


def test_what_a_handler_refuses_keeps_its_message_and_anything_else_gets_an_incident():
    kept = gr.Error("class 'cat' has 1 image", print_exception=False)
    assert refusal(kept, None) is kept
    assert "incident" in str(refusal(KeyError("x"), None))
    with pytest.raises(gr.Error, match="does not download"):  # a URL anywhere in a nested input
        check_inputs(type("Event", (), {"inputs": [None], "api_name": "x"})(),
                     [{"deep": [[file_data("https://example.org/a/b.jpg?x=1")]]}])


def test_the_app_refuses_unuploaded_paths_and_partial_calls_with_a_message(app_url):
    event, answer = called(app_url, "predict", ["a-handle", [file_data("/etc/passwd")]])
    assert event == "error" and answer["error"].startswith("passwd was never uploaded to this server")
    event, answer = called(app_url, "fit_texts", [["hello", "rain"]])
    assert event == "error" and answer["error"].startswith("/fit_texts takes 6 inputs, in this order: texts, labels")


def test_a_file_payload_without_meta_is_checked_like_any_upload(guarded_app, tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"\x89PNG")
    event, answer = called(guarded_app[0], "picture", [{"path": str(outside)}])
    assert event == "error" and answer["error"].startswith("elsewhere.png was never uploaded to this server")


def test_a_webcam_frame_sent_as_a_bare_data_url_is_refused_with_a_message(app_url):
    """The camera's stream event (private: named "this event"), joined through the queue as the page does."""
    http = httpx.Client()
    config = http.get(app_url + "config").json()
    kinds = {component["id"]: component["type"] for component in config["components"]}
    stream = next(d for d in config["dependencies"] if [t[1] for t in d["targets"]] == ["stream"])
    frame = "data:image/png;base64,iVBORw0KGgo="
    data = [frame if kinds[i] == "image" else None for i in stream["inputs"]]
    joined = http.post(app_url + "gradio_api/queue/join", json={
        "data": data, "fn_index": stream["id"], "session_hash": "bare-frame", "trigger_id": stream["targets"][0][0]})
    assert joined.status_code == 200
    with http.stream("GET", app_url + "gradio_api/queue/data", params={"session_hash": "bare-frame"}, timeout=60) as s:
        completed = next(json.loads(line[6:]) for line in s.iter_lines() if "process_completed" in line)
    assert completed["output"]["error"].startswith("An input of this event is not in the form its component takes")


@pytest.mark.parametrize(("case", "status", "message"), [
    ("an unknown parameter", 400, "Parameter `nope` is not a valid key-word argument"),
    ("an unknown endpoint", 404, "No endpoint or event of that name or number: /gradio_api/info lists the endpoints"),
    ("an unknown event number", 404, "No endpoint or event of that name or number"),
])
def test_a_route_that_raises_answers_a_message(guarded_app, case, status, message):
    path, body = ROUTE_REFUSALS[case]
    answer = httpx.post(guarded_app[0] + path, json=body)
    assert answer.status_code == status and answer.json()["error"].startswith(message)
