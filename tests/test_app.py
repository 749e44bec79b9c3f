"""The app as users reach it: its API through gradio_client, its page through headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from fewshot_demo.config.limits import Limits

MAX_CLASSES = Limits.ROWS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _classify(client, classes, queries, method="protonet"):
    names = [name for name, _ in classes] + [""] * (MAX_CLASSES - len(classes))
    files = [[handle_file(str(p)) for p in paths] if paths else None for _, paths in classes]
    files += [None] * (MAX_CLASSES - len(classes))
    return client.predict(
        "efficientnet_lite0", method, 5, True, 0.5, [handle_file(str(q)) for q in queries], None, *names, *files, 5, 1.0,
        api_name="/image_classify",
    )


def _example(set_name):
    support = EXAMPLES / set_name / "support"
    classes = [(d.name, sorted(d.iterdir())) for d in sorted(support.iterdir())]
    queries = sorted((EXAMPLES / set_name / "query").glob("*/*.jpg"))
    return classes, queries


def test_api_classifies_an_example_set_with_explanations(client):
    classes, queries = _example("produce")
    status, first_label, html, _plot = _classify(client, classes, queries)
    labels = re.findall(r'data-label="([^"]+)"', html)
    truth = [q.parent.name for q in queries]
    assert len(labels) == len(queries)
    assert sum(a == b for a, b in zip(labels, truth)) >= len(queries) - 2
    assert "6 queries classified" in status
    assert first_label["label"] == labels[0]
    assert "Distance to each class prototype" in html and "Most similar examples" in html


def test_api_maml_shows_its_adaptation_step_by_step(client):
    classes, queries = _example("animals")
    status, _, html, plot = _classify(client, classes, queries, method="maml")
    steps = re.findall(r"(\d+): loss ([0-9.]+) / acc", status)
    assert [int(s) for s, _ in steps] == list(range(6))  # step 0 (before) and 5 inner steps
    assert float(steps[-1][1]) < float(steps[0][1])  # adaptation lowered the support loss
    assert plot is not None and len(re.findall(r"data-label=", html)) == len(queries)


def test_api_load_example_fills_the_classes(client):
    outputs = client.predict("animals", api_name="/image_load_example")
    names = outputs[:MAX_CLASSES]
    assert list(names[:3]) == ["bird", "bovine", "fish"] and names[3] == ""


@pytest.mark.parametrize(
    "make_classes, message",
    [
        (lambda c: c[:1], "at least 2 classes"),
        (lambda c: [c[0], (c[0][0], c[1][1])], "two classes are named"),
        (lambda c: [c[0], (c[1][0], [])], "has no usable images"),
        (lambda c: [c[0], ("", c[1][1])], "has no name"),
    ],
)
def test_api_bad_support_sets_get_clear_errors(client, make_classes, message):
    classes, queries = _example("animals")
    with pytest.raises(AppError, match=message):
        _classify(client, make_classes(classes), queries[:1])


def test_api_non_image_query_is_reported_and_the_rest_classified(client, tmp_path):
    classes, queries = _example("animals")
    bad = tmp_path / "report.pdf"
    bad.write_bytes(b"%PDF-1.4 not an image")
    status, _, html, _ = _classify(client, classes, [queries[0], bad])
    assert "report.pdf is not an image" in status
    assert len(re.findall(r"data-label=", html)) == 1
    with pytest.raises(AppError, match="none of the query files is a usable image"):
        _classify(client, classes, [bad])


def test_api_save_then_load_the_classifier(client):
    classes, queries = _example("animals")
    _classify(client, classes, queries[:1], method="linear")
    saved = client.predict(api_name="/image_save")
    assert saved.endswith(".safetensors")
    outputs = client.predict(handle_file(saved), "efficientnet_lite0", api_name="/image_load")
    assert "Loaded a `linear` classifier" in outputs[0]
    assert list(outputs[1:4]) == ["bird", "bovine", "fish"]  # session states are not API outputs


def test_api_loading_a_foreign_file_is_refused(client, tmp_path):
    junk = tmp_path / "weights.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(AppError, match="not a saved classifier file"):
        client.predict(handle_file(str(junk)), "efficientnet_lite0", api_name="/image_load")


def test_browser_loads_an_example_and_shows_predictions(app_url, browser, artifacts):
    page = browser.new_page()
    try:
        page.goto(app_url, wait_until="load", timeout=60_000)
        page.locator("#image-examples .thumbnail-item").first.click()
        first = page.locator("#image-results .fs-prediction").first
        first.wait_for(timeout=120_000)
        labels = page.locator("#image-results .fs-prediction").evaluate_all(
            "cards => cards.map(c => c.dataset.label)"
        )
        # The default example set is the first one, 'animals': 2 queries per class.
        assert len(labels) == 6 and set(labels) <= {"bird", "bovine", "fish"}
        assert sum(a == b for a, b in zip(labels, ["bird", "bird", "bovine", "bovine", "fish", "fish"])) >= 4
        assert "queries classified" in page.locator("#image-status").inner_text()
        page.screenshot(path=str(artifacts / "image_tab_example.png"), full_page=False)
    finally:
        page.close()


def test_classes_entered_in_the_image_tab_can_be_compared(client):
    """The comparison tab's 'classes from the app' data set is what the image tab last classified."""
    from fewshot_demo.ui.compare_tab import TAB_DATA

    classes, queries = _example("mixed_5way")
    _classify(client, classes, queries[:1])
    job = client.submit(TAB_DATA, None, 3, [1], 10, ["protonet", "linear"], api_name="/compare_run")
    outputs = job.result(timeout=300)
    status, table = outputs[0], outputs[1]
    assert "ProtoNet" in str(table) and "Linear probe" in str(table), status  # the table names methods by label
    assert "in the image tab" in status


def test_the_start_up_warm_up_freezes_what_it_loaded_for_the_garbage_collector(monkeypatch):
    """A full collection would otherwise rescan the models and the page (0.3 s, every request held)."""
    import gc
    from types import SimpleNamespace

    import app as app_module

    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(app_module, "warm", SimpleNamespace(load=lambda: False))
    app_module.warm_up()
    assert frozen == []  # a failed load freezes nothing: it is retried, and what it leaves is garbage
    monkeypatch.setattr(app_module, "warm", SimpleNamespace(load=lambda: True))
    app_module.warm_up()
    assert frozen == [True]
