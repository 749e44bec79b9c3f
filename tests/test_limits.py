"""Limits and fairness: configurable, checked before work starts, and one user's run cannot hold others back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from fewshot_demo.bench.compare_run import stop_within
from fewshot_demo.bench.results import ComparisonUpdate
from fewshot_demo.config.checks import check_count, check_file_sizes
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.limits import Limits
from fewshot_demo.config.settings import settings
from fewshot_demo.core.image_task import build_support, load_images

ROOT = Path(__file__).resolve().parents[1]
INTENTS = ROOT / "examples" / "text" / "intents" / "support.csv"


def test_every_limit_reads_its_variable_and_refuses_nonsense():
    found = Limits.from_environment({"FEWSHOT_MAX_QUERY_IMAGES": "3", "FEWSHOT_MAX_UPLOAD_MB": "0.5",
                                     "FEWSHOT_MAX_QUEUE": " "})
    assert found.max_query_images == 3 and found.max_upload_mb == 0.5 and found.max_queue == Limits.max_queue
    for value in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match="FEWSHOT_MAX_CLASSES must be a positive whole number"):
            Limits.from_environment({"FEWSHOT_MAX_CLASSES": value})
    with pytest.raises(ValueError, match="at most 20"):
        Limits.from_environment({"FEWSHOT_MAX_CLASSES": "21"})


def test_counts_are_refused_before_any_file_is_read(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWSHOT_MAX_QUERY_IMAGES", "2")
    monkeypatch.setenv("FEWSHOT_MAX_IMAGES_PER_CLASS", "2")
    settings.cache_clear()
    missing = [str(tmp_path / f"not-there-{i}.png") for i in range(3)]  # reading any would say "not found"
    with pytest.raises(ValueError, match="3 images; at most 2"):
        load_images(missing, None, "queries")
    with pytest.raises(ValueError, match="class 'b' has 3 images; at most 2"):
        build_support([("a", missing[:1]), ("b", missing)])
    with pytest.raises(UserInputError, match="5 query texts; at most 4 in one call: split them"):
        check_count(5, 4, "query texts", "split them into batches")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (2 * 2**20))
    with pytest.raises(UserInputError, match=r"big.png is 2.0 MB; files up to 1 MB"):
        check_file_sizes([big], 1)


def _update(kind: str, done: int) -> ComparisonUpdate:
    return ComparisonUpdate(kind, kind, done, 10, [], [], [])


def test_stop_is_answered_while_an_episode_is_still_running():
    cancel = threading.Event()
    release = threading.Event()

    def slow_run():
        yield _update("progress", 1)
        release.wait(10)  # an episode that takes long (text fine-tuning on a CPU)
        yield _update("result", 2)

    updates = stop_within(slow_run(), cancel, poll_s=0.05)
    assert next(updates).done == 1
    cancel.set()
    started = time.perf_counter()
    stopped = next(updates)
    assert time.perf_counter() - started < 0.5
    assert stopped.kind == "cancelled" and stopped.finished and "1 of 10 episodes" in stopped.message
    release.set()


def test_stop_passes_a_runs_own_end_and_errors_through():
    assert [u.kind for u in stop_within(iter([_update("progress", 1), _update("done", 10)]), threading.Event())] == [
        "progress", "done"]

    def failing():
        yield _update("progress", 1)
        raise ValueError("the data cannot make these episodes")

    with pytest.raises(ValueError, match="cannot make these episodes"):
        list(stop_within(failing(), threading.Event()))


def test_the_app_puts_comparisons_and_classifications_in_their_own_groups(client):
    import app as app_module

    groups = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in app_module.demo.fns.values()}
    assert groups["compare_run"] == ("compare", 1)
    assert groups["image_classify"] == groups["text_classify"] == groups["fit_images"] == ("classify", 2)
    assert groups["predict"] == ("predict", 4) and groups["compare_stop"][1] is None
    assert app_module.demo._queue.max_size == Limits.max_queue  # queue() of the launched app (conftest)


def test_a_comparison_over_the_limits_is_refused_before_it_starts(client, monkeypatch):
    with pytest.raises(AppError, match="601 is greater than maximum value 600"):  # the slider's own bound
        client.submit("upload", handle_file(str(INTENTS)), 3, [1], 601, ["protonet"], api_name="/compare_run").result()
    monkeypatch.setenv("FEWSHOT_MAX_EPISODES", "20")
    settings.cache_clear()
    with pytest.raises(AppError, match="30 episodes per K-shot; this server runs at most 20"):
        client.submit("upload", handle_file(str(INTENTS)), 3, [1], 30, ["protonet"], api_name="/compare_run").result()
    methods = ["linear", "baselinepp", "protonet", "maml", "fomaml", "reptile", "matchingnet", "protonet_plain", "finetune"]
    with pytest.raises(AppError, match="9 methods in one run; this server compares at most 8"):
        client.submit("upload", handle_file(str(INTENTS)), 3, [1], 10, methods, api_name="/compare_run").result()


def test_a_long_comparison_does_not_hold_back_a_classification_and_stops_at_once(client):
    """Text fine-tuning takes seconds per episode: classifications still answer, and Stop ends the run at once."""
    job = client.submit("upload", handle_file(str(INTENTS)), 3, [1], 50, ["finetune"], api_name="/compare_run")
    deadline = time.time() + 60
    while time.time() < deadline and not any("Embedding" in str(o[0]) or "finetune" in str(o[0]) for o in job.outputs()):
        time.sleep(0.05)
    time.sleep(1.0)  # well inside the fine-tuning episodes
    assert not job.done()
    started = time.perf_counter()
    answer = client.predict(["hello there", "good morning", "will it rain?", "is it hot today"],
                            ["greeting", "greeting", "weather", "weather"], ["hi!"], api_name="/predict_texts")
    classify_seconds = time.perf_counter() - started
    assert answer["predictions"][0]["label"] == "greeting"
    started = time.perf_counter()
    client.predict(api_name="/compare_stop")
    status = job.result(timeout=30)[0]
    stop_seconds = time.perf_counter() - started
    assert "Stopped" in status, status
    assert classify_seconds < 5, classify_seconds
    assert stop_seconds < 1.5, stop_seconds


def test_an_upload_over_the_size_limit_is_refused_by_the_web_server(app_url):
    import httpx

    too_big = b"\0" * (int(Limits.max_upload_mb * 2**20) + 1024)
    response = httpx.post(app_url + "gradio_api/upload", files=[("files", ("huge.png", too_big))], timeout=60)
    assert response.status_code == 413 and "maximum allowed size" in response.text


def test_no_route_runs_a_queued_event_past_the_queue(app_url):
    """/gradio_api/run/<name> would skip the queue's limits and size (and build a session state per call)."""
    import httpx

    import app as app_module

    refused = httpx.post(app_url + "gradio_api/run/predict", json={"data": ["some-handle", ["hi"]]}, timeout=30)
    assert refused.status_code == 404 and "join the queue" in refused.text
    assert app_module.demo._queue.ANAYLTICS_CACHE_FREQUENCY == 500  # Gradio's spelling; not after every event


def test_the_query_limit_of_the_image_tab_follows_the_environment(monkeypatch):
    from fewshot_demo.ui import image_tab

    monkeypatch.setenv("FEWSHOT_MAX_QUERY_IMAGES", "2")
    settings.cache_clear()
    with pytest.raises(ValueError, match="3 images; at most 2"):
        image_tab.IMAGE.read_queries(["a.png", "b.png", "c.png"])
