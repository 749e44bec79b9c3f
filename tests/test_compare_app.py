"""The comparison tab as users reach it: its API through gradio_client, its page through headless Chromium."""

from __future__ import annotations

import re
import socket
import time
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from fewshot_demo.bench.comparison import method_label
from fewshot_demo.data.builtin import BUILTIN_DATASETS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"


def _app_has_the_tab() -> bool:
    return "build_compare_tab" in (ROOT / "app.py").read_text()


@pytest.fixture(scope="module")
def compare_url(request):
    """The real app when it includes the tab, else a small Blocks holding only the tab."""
    if _app_has_the_tab():
        yield request.getfixturevalue("app_url")
        return
    import gradio as gr

    from fewshot_demo.ui.compare_tab import build_compare_tab

    with gr.Blocks() as demo:
        with gr.Tab("Transfer vs meta"):
            build_compare_tab()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def compare_client(compare_url):
    return Client(compare_url, verbose=False)


@pytest.fixture(scope="module")
def class_zip(tmp_path_factory) -> Path:
    """The mixed example set as an upload: 5 class folders of 7 photos inside one top folder."""
    archive = tmp_path_factory.mktemp("upload") / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((EXAMPLES / "mixed_5way").glob("*/*/*")):
            zipped.write(path, f"mixed/{path.parent.name}/{path.parent.parent.name}_{path.name}")
    return archive


def _run(client, source, upload, shots, episodes, methods):
    return client.submit(source, upload, 5, shots, episodes, methods, api_name="/compare_run")


def test_api_streams_partial_results_then_exports_and_details(compare_client, class_zip):
    job = _run(compare_client, "upload", handle_file(str(class_zip)), [1, 5], 10, ["baselinepp", "linear", "protonet"])
    first_table_at, started = None, time.perf_counter()
    while not job.done():
        if first_table_at is None and any(isinstance(o[1], dict) and o[1].get("data") for o in job.outputs()):
            first_table_at = time.perf_counter() - started
        time.sleep(0.05)
    status, table, verdict, *_plots, choice, csv_path, json_path = job.result()
    assert "Done: 6 result(s)" in status
    rows = table["data"]
    assert [(r[0], r[3]) for r in rows] == [(method_label(m), k) for k in (1, 5)
                                            for m in ("protonet", "linear", "baselinepp")]  # cheapest first, by label
    assert all(r[4] == 10 and 20 <= r[5] <= 100 for r in rows)  # episodes, accuracy in %
    assert len(job.outputs()) > 3  # partial updates came before the end
    assert first_table_at is not None
    assert "wins with" in verdict and "Chen et al. 2019" in verdict
    assert Path(csv_path).read_text().startswith("dataset,method,family")
    assert '"per_class_accuracy"' in Path(json_path).read_text()
    per_class, _confusion, gallery, _text = compare_client.predict(0, api_name="/compare_details")
    assert {row[0] for row in per_class["data"]} <= {"bird", "flower", "fruit", "mammal", "vehicle"} | {
        p.name for p in (EXAMPLES / "mixed_5way" / "support").iterdir()}
    assert all(0 <= row[1] <= 100 for row in per_class["data"])
    assert gallery is None or isinstance(gallery, (list, dict))


def test_a_long_session_keeps_no_copies_of_old_results(compare_url, class_zip):
    # Gradio filed a copy of each output that a value followed a gr.skip() into, under a new id, with
    # the value, and never removed it: every run grew the session by its tables and plots.
    import app as app_module

    session = Client(compare_url, verbose=False)
    for _ in range(2):
        assert "Done" in _run(session, "upload", handle_file(str(class_zip)), [1], 10, ["protonet"]).result()[0]
    state = app_module.demo.state_holder.session_data[session.session_hash]
    assert set(state.blocks_config.blocks) == set(app_module.demo.blocks)
    assert set(state.config_values) <= set(app_module.demo.blocks)


def test_api_bad_inputs_get_clear_errors(compare_client):
    with pytest.raises(AppError, match="upload a zip of class folders"):
        _run(compare_client, "upload", None, [1], 10, ["protonet"]).result()
    with pytest.raises(AppError, match="choose at least one method"):
        _run(compare_client, next(iter(BUILTIN_DATASETS)), None, [1], 10, []).result()
    with pytest.raises(AppError, match="at least one K-shot"):
        _run(compare_client, next(iter(BUILTIN_DATASETS)), None, [], 10, ["protonet"]).result()


def test_api_stop_keeps_finished_results(compare_client, class_zip):
    job = _run(compare_client, "upload", handle_file(str(class_zip)), [1, 5], 600, ["protonet", "linear", "baselinepp"])
    deadline = time.time() + 120
    while time.time() < deadline and not any("ProtoNet 1-shot:" in str(o[0]) and "%" in str(o[0]) for o in job.outputs()):
        time.sleep(0.05)
    compare_client.predict(api_name="/compare_stop")
    status = job.result()[0]
    assert "Stopped" in status, status


def test_browser_runs_a_small_comparison_and_shows_a_number(compare_url, browser, tmp_path):
    if not BUILTIN_DATASETS["tuxpaint"].is_installed():
        pytest.skip("Tux Paint photos are not installed (apt-get install tuxpaint-stamps-default)")
    page = browser.new_page()
    try:
        page.goto(compare_url, wait_until="load", timeout=60_000)
        page.get_by_role("tab", name="Transfer vs meta").click()
        methods = page.locator("#compare-methods")
        methods.get_by_label("Baseline++ (transfer)", exact=True).uncheck()
        methods.get_by_label("MAML (meta)", exact=True).uncheck()
        page.locator("#compare-shots").get_by_label("1", exact=True).uncheck()
        episodes = page.locator("#compare-episodes input[type=number]")
        episodes.fill("20")
        episodes.press("Enter")
        page.locator("#compare-run").click()
        page.locator("#compare-status", has_text="Done").wait_for(timeout=180_000)
        verdict = page.locator("#compare-reading").inner_text()
        accuracy = float(re.search(r"wins with (\d+\.\d)%", verdict).group(1))
        assert 50 <= accuracy <= 100  # 5-way 5-shot on real photos: far above chance (20%)
        assert "20/20" not in verdict and "40/40 episodes" in page.locator("#compare-status").inner_text()
        page.screenshot(path=str(tmp_path / "compare_tab.png"), full_page=True)
    finally:
        page.close()
