"""The text tab as users reach it: its API through gradio_client, its page through headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from fewshot_demo.config.limits import Limits

MAX_CLASSES = Limits.ROWS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "text"


def _boxes(classes: list[tuple[str, str]]) -> list[str]:
    padded = classes + [("", "")] * (MAX_CLASSES - len(classes))
    return [name for name, _ in padded] + [block for _, block in padded]


def _classify(client, classes, queries, method="linear", encoder="minilm", steps=5, loss="contrastive"):
    return client.predict(encoder, method, steps, loss, queries, *_boxes(classes), api_name="/text_classify")


def _example(client, name="intents"):
    outputs = client.predict(name, api_name="/text_load_example")
    names, blocks, queries = outputs[:MAX_CLASSES], outputs[MAX_CLASSES : 2 * MAX_CLASSES], outputs[-1]
    return [(n, b) for n, b in zip(names, blocks) if n], queries


def test_api_load_example_fills_classes_and_queries(client):
    classes, queries = _example(client, "intents")
    assert [name for name, _ in classes] == ["set_alarm", "weather", "play_music", "order_food", "make_call"]
    assert all(len(block.splitlines()) == 8 for _, block in classes)
    assert len(queries.splitlines()) == 8


@pytest.mark.parametrize("method, loss", [("linear", ""), ("protonet", ""), ("finetune", "contrastive"), ("finetune", "cross_entropy")])
def test_api_classifies_with_probabilities_and_nearest_examples(client, method, loss):
    classes, queries = _example(client, "intents")
    status, first_label, cards = _classify(client, classes, queries, method=method, loss=loss or "contrastive")
    labels = re.findall(r'data-label="([^"]+)"', cards)
    expected = ["set_alarm", "weather", "play_music", "order_food", "make_call", "weather", "order_food", "play_music"]
    assert len(labels) == 8 and sum(a == b for a, b in zip(labels, expected)) >= 7
    assert "8 queries classified" in status and f"`{method}`" in status
    assert first_label["label"] == labels[0]
    assert "Most similar examples" in cards and "set_alarm: " in cards  # nearest support texts, captioned


def test_api_self_check_and_map(client):
    classes, queries = _example(client, "sentiment")
    _classify(client, classes, queries)
    text, table, plot = client.predict("minilm", api_name="/text_self_check")
    assert "leave-one-out" in text
    assert table["headers"][1:] == ["positive", "negative", "neutral"]
    assert plot is not None


@pytest.mark.parametrize(
    "classes, queries, message",
    [
        ([("greeting", "hello\nhi")], "hey", "only one class"),
        ([("greeting", "hello"), ("weather", "  \n ")], "hey", "'weather' has no example text"),
        ([("greeting", "hello"), ("", "rain")], "hey", "class 2 has examples but no name"),
        ([("greeting", "hello"), ("weather", "rain")], " \n \n", "at least one query"),
        ([], "hey", "no example texts yet"),
    ],
)
def test_api_bad_input_gets_clear_errors(client, classes, queries, message):
    with pytest.raises(AppError, match=message):
        _classify(client, classes, queries)


def test_api_awkward_but_valid_text_is_classified(client):
    classes = [
        ("positive", "I love it 😍\nC'est génial !\nهذا رائع\nwunderbar, danke\n  \nI love it 😍"),
        ("negative", "I hate it 😡\nC'est nul.\nهذا سيء\nschrecklich\n" + "terrible product " * 300),
    ]
    status, _, cards = _classify(client, classes, "absolutely love this 😍\n\nhorrible, je déteste")
    assert "2 queries classified" in status
    assert "Merged 1 exact duplicate" in status and "longer than 256 tokens" in status
    assert re.findall(r'data-label="([^"]+)"', cards) == ["positive", "negative"]


def test_api_upload_fills_classes_and_rejects_bad_files(client, tmp_path):
    outputs = client.predict(handle_file(str(EXAMPLES / "topics" / "support.csv")), api_name="/text_upload")
    assert list(outputs[:6]) == ["sport", "technology", "cooking", "politics", "health", ""]
    assert "Read 40 examples in 5 classes" in outputs[-1]
    latin1 = tmp_path / "reviews.csv"
    latin1.write_bytes("text,label\ncafé au lait,drink\n".encode("latin-1"))
    with pytest.raises(AppError, match="not UTF-8"):
        client.predict(handle_file(str(latin1)), api_name="/text_upload")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("sentence,category\nhello,greeting\n", encoding="utf-8")
    with pytest.raises(AppError, match="columns 'text' and 'label'"):
        client.predict(handle_file(str(wrong)), api_name="/text_upload")
    many = tmp_path / "many.jsonl"
    many.write_text("".join(f'{{"text": "example {i}", "label": "class {i}"}}\n' for i in range(55)), encoding="utf-8")
    with pytest.raises(AppError, match="55 classes is more than the 20"):
        client.predict(handle_file(str(many)), api_name="/text_upload")


def test_api_offline_hub_encoder_names_the_default(client):
    classes, queries = _example(client, "intents")
    with pytest.raises(AppError, match="bundled default 'minilm' works offline"):
        _classify(client, classes, queries, encoder="bert-base-uncased")


def test_api_save_then_load_the_classifier(client, tmp_path):
    classes, queries = _example(client, "topics")
    _, _, before = _classify(client, classes, queries)
    saved = client.predict(api_name="/text_save")
    assert saved.endswith(".safetensors")
    outputs = client.predict(handle_file(saved), "minilm", api_name="/text_load")
    assert "Loaded a `linear` classifier" in outputs[0]
    assert list(outputs[1:6]) == ["sport", "technology", "cooking", "politics", "health"]
    loaded_classes = [(name, "") for name in outputs[1:6]]  # names only: the file keeps embeddings, not texts
    status, _, after = _classify(client, loaded_classes, queries)
    assert "loaded classifier" in status
    assert re.findall(r'data-label="([^"]+)"', after) == re.findall(r'data-label="([^"]+)"', before)
    junk = tmp_path / "weights.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(AppError, match="not a saved classifier file"):
        client.predict(handle_file(str(junk)), "minilm", api_name="/text_load")
    with pytest.raises(AppError, match="'minilm:cls' is selected"):
        client.predict(handle_file(saved), "minilm:cls", api_name="/text_load")


def test_classes_entered_in_the_text_tab_can_be_compared(client):
    """The text tab feeds the comparison tab's 'classes from the app' data set, like the image tab."""
    from fewshot_demo.bench.comparison import method_label
    from fewshot_demo.ui.compare_tab import TAB_DATA

    classes, queries = _example(client, "topics")
    _classify(client, classes, queries)
    job = client.submit(TAB_DATA, None, 3, [1], 10, ["protonet", "linear"], api_name="/compare_run")
    status, table = job.result(timeout=300)[:2]
    assert "in the text tab" in status, status
    assert {row[0] for row in table["data"]} == {method_label("protonet"), method_label("linear")}


def test_browser_text_tab_loads_an_example_and_shows_predictions(app_url, browser, artifacts):
    page = browser.new_page()
    try:
        page.goto(app_url, wait_until="load", timeout=60_000)
        page.get_by_role("tab", name="Text").click()
        page.locator("#text-examples").get_by_text("intents:").first.click()
        page.locator("#text-results .fs-prediction").first.wait_for(timeout=120_000)
        labels = page.locator("#text-results .fs-prediction").evaluate_all("cards => cards.map(c => c.dataset.label)")
        # The default example set is the first one, 'intents': 8 queries.
        expected = ["set_alarm", "weather", "play_music", "order_food", "make_call", "weather", "order_food", "play_music"]
        assert len(labels) == 8 and sum(a == b for a, b in zip(labels, expected)) >= 7
        assert "queries classified" in page.locator("#text-status").inner_text()
        assert page.locator("#text-queries textarea").input_value().startswith("Get me up at half past five")
        page.screenshot(path=str(artifacts / "text_tab_example.png"), full_page=False)
    finally:
        page.close()
