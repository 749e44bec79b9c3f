"""The text tab's logic: fit, classify with explanations, self-check, map, save and load."""

from __future__ import annotations

import pytest
import torch

from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.core.text_task import (
    build_text_support,
    classify_texts,
    fit_text_classifier,
    load_text_classifier,
    parse_queries,
)
from fewshot_demo.encoders.text import load_encoder

CLASSES = [
    ("greeting", "hello there\nhi, how are you?\ngood morning!\nhey, nice to see you"),
    ("weather", "will it rain tomorrow?\nhow hot is it today\nis it going to snow this week\nwhat's the forecast"),
    ("music", "play some jazz\nput on my workout playlist\nskip this song\nturn the music up"),
]
QUERIES = ["good evening!", "do I need an umbrella", "play something by Miles Davis"]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("minilm", "cpu")


@pytest.mark.parametrize("method", ["linear", "protonet", "finetune"])
def test_fit_classify_explain_check_map_save_load(method, encoder, tmp_path):
    options = {"steps": 5} if method == "finetune" else {}
    classifier, notes = fit_text_classifier(build_text_support(CLASSES), encoder, method, options)
    assert notes == []
    predictions, _ = classify_texts(classifier, encoder, QUERIES)
    assert [p.label for p in predictions] == ["greeting", "weather", "music"]
    for prediction in predictions:
        assert abs(sum(prediction.probabilities.values()) - 1) < 1e-4
        nearest_index, similarity = prediction.nearest[0]
        assert classifier.class_names[int(classifier.support_labels[nearest_index])] == prediction.label
        assert -1 <= similarity <= 1
    check = classifier.self_check()
    assert check.accuracy is not None and check.accuracy >= 0.75
    assert classifier.self_check_method == ("linear" if method == "finetune" else method)
    coordinates = classifier.embedding_map(classifier.support_features[:2])
    assert coordinates["support"].shape == (12, 2) and coordinates["query"].shape == (2, 2)
    path = classifier.save(tmp_path / "text.safetensors")
    restored = load_text_classifier(path, "minilm")
    assert isinstance(restored, FewShotClassifier) and restored.method == method
    again, _ = classify_texts(restored, encoder, QUERIES)
    for before, after in zip(predictions, again):
        assert before.label == after.label
        for name in classifier.class_names:
            assert abs(before.probabilities[name] - after.probabilities[name]) < 1e-4


def test_loading_refuses_another_encoder(encoder, tmp_path):
    classifier, _ = fit_text_classifier(build_text_support(CLASSES), encoder, "linear")
    path = classifier.save(tmp_path / "text.safetensors")
    with pytest.raises(ValueError, match="'minilm:cls' is selected"):
        load_text_classifier(path, "minilm:cls")
    with pytest.raises(ValueError, match="'minilm' features but 'minilm:cls' is selected"):
        classify_texts(classifier, load_encoder("minilm:cls", "cpu"), QUERIES)


def test_bad_support_and_queries_give_clear_messages():
    with pytest.raises(ValueError, match="only one class"):
        build_text_support([("greeting", "hi\nhello"), ("", "")])
    with pytest.raises(ValueError, match="no example text"):
        build_text_support([("greeting", "hi"), ("weather", "   ")])
    with pytest.raises(ValueError, match="more than the 20"):
        build_text_support([(f"class {i}", f"text number {i}") for i in range(55)])
    with pytest.raises(ValueError, match="at most 1000 at once"):
        build_text_support([("a", "\n".join(f"a{i}" for i in range(600))), ("b", "\n".join(f"b{i}" for i in range(600)))])
    with pytest.raises(ValueError, match="at least one query"):
        parse_queries(" \n\t\n")
    assert parse_queries("a\n\n b ") == ["a", "b"]


def test_duplicates_unbalanced_and_long_texts_are_reported(encoder):
    table = build_text_support([("greeting", "hi\nhi\nhello\nhey"), ("weather", "rain?\n" + "sunny day " * 400)])
    assert any("duplicate" in note for note in table.notes) and any("different numbers" in note for note in table.notes)
    classifier, notes = fit_text_classifier(table, encoder, "linear")
    assert any("longer than 256 tokens" in note for note in notes)
    predictions, query_notes = classify_texts(classifier, encoder, ["will it be sunny", "x " * 600])
    assert predictions[0].label == "weather" and any("1 query was longer" in note for note in query_notes)
    torch.testing.assert_close(torch.tensor(sum(predictions[1].probabilities.values())), torch.tensor(1.0))
