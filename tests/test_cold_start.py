"""Cold start: requests of every tab and endpoint sent together while a fresh app still loads its models.

One fresh ``python app.py`` (its warm-up thread starts loading the models at launch); as soon as its
page answers, one client per request connects and all requests are released together, so every
pair of them runs at once, during the first loads. Each must succeed (waiting for the load is fine).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
from gradio_client import Client, handle_file

from fewshot_demo.config.limits import Limits

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "examples" / "images" / "animals"
TOPICS = ROOT / "examples" / "text" / "topics"
ROWS = Limits.ROWS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_page(url: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode} before its page answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory):
    """A just-started app process (models not loaded yet): its URL and the file its log goes to."""
    port = _free_port()
    log = tmp_path_factory.mktemp("cold-start") / "app.log"
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(log.parent / "gradio"))
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_page(url, process)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=30)


def _support() -> tuple[list[Path], list[str]]:
    paths = [p for d in sorted((ANIMALS / "support").iterdir()) for p in sorted(d.iterdir())[:2]]
    return paths, [p.parent.name for p in paths]


def _image_tab(client: Client) -> Any:
    paths, labels = _support()
    names = list(dict.fromkeys(labels))
    files = [[handle_file(str(p)) for p in paths if p.parent.name == name] for name in names]
    query = sorted((ANIMALS / "query").glob("*/*"))[0]
    status = client.predict("efficientnet_lite0", "protonet", 5, True, 0.5, [handle_file(str(query))], None,
                            *names, *[""] * (ROWS - len(names)), *files, *[None] * (ROWS - len(names)), 5, 1.0,
                            api_name="/image_classify")[0]
    assert "classified" in str(status), status
    return status


def _text_tab(client: Client) -> Any:
    classes = [("greeting", "hello there\ngood morning"), ("weather", "will it rain?\nis it hot")]
    padded = classes + [("", "")] * (ROWS - len(classes))
    status = client.predict("minilm", "linear", 5, "contrastive", "hi\nsunny today", *[n for n, _ in padded],
                            *[b for _, b in padded], api_name="/text_classify")[0]
    assert "classified" in str(status), status
    return status


def _compare(client: Client) -> Any:
    status = client.submit("upload", handle_file(str(TOPICS / "support.csv")), 2, [1], 10, ["protonet"],
                           api_name="/compare_run").result(timeout=600)[0]
    assert "Done" in str(status), status
    return status


def _fit_images(client: Client) -> Any:
    paths, labels = _support()
    return client.predict([handle_file(str(p)) for p in paths], labels, api_name="/fit_images")["handle"]


REQUESTS: dict[str, Callable[[Client], Any]] = {
    "/warmup": lambda client: client.predict(api_name="/warmup"),
    "/image_classify": _image_tab,
    "/text_classify": _text_tab,
    "/compare_run": _compare,
    "/fit_images": _fit_images,
    "/fit_texts": lambda client: client.predict(["hello", "hi", "rain", "sun"], ["greeting", "greeting", "weather",
                                                "weather"], api_name="/fit_texts")["handle"],
    "/predict_texts": lambda client: client.predict(["hello", "rain"], ["greeting", "weather"], ["hi"],
                                                    api_name="/predict_texts")["predictions"],
}


def test_first_requests_of_every_tab_and_endpoint_at_once_all_succeed_during_start_up(fresh_app):
    url, log = fresh_app
    released = threading.Barrier(len(REQUESTS))
    answers: dict[str, str] = {}

    def send(name: str) -> None:
        try:
            client = Client(url, verbose=False)
            released.wait(timeout=120)  # every request leaves at once
            REQUESTS[name](client)
            answers[name] = "ok"
        except Exception as error:  # noqa: BLE001 - every failure is reported with its endpoint
            answers[name] = f"{type(error).__name__}: {error}"

    threads = [threading.Thread(target=send, args=(name,)) for name in REQUESTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    failed = {name: answer for name, answer in answers.items() if answer != "ok"}
    assert not failed and len(answers) == len(REQUESTS), (failed, log.read_text(errors="replace")[-3000:])
    assert "cannot import name" not in log.read_text(errors="replace")
