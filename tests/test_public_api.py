"""The package's public API as its README shows it: fit, predict, self-check, save, load."""

from __future__ import annotations

from pathlib import Path

import pytest

import fewshot_demo as fsd
from fewshot_demo.config.errors import CheckpointMissingError, UserInputError

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "examples" / "images" / "animals"


def _queries() -> tuple[list[Path], list[str]]:
    paths = sorted(p for p in (ANIMALS / "query").rglob("*") if p.is_file())
    return paths, [p.parent.name for p in paths]


def test_images_from_a_folder_fit_predict_check_save_and_load(tmp_path):
    classifier = fsd.fit(ANIMALS / "support")
    assert classifier.modality == "image" and classifier.class_names == ["bird", "bovine", "fish"]
    queries, truth = _queries()
    predictions = classifier.predict(queries)
    assert sum(p.label == t for p, t in zip(predictions, truth)) >= len(truth) - 1
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-4 for p in predictions)
    assert classifier.self_check().accuracy is not None
    restored = fsd.load(classifier.save(tmp_path / "animals.safetensors"))
    again = restored.predict(queries)
    assert [p.label for p in again] == [p.label for p in predictions]
    assert again[0].probabilities == pytest.approx(predictions[0].probabilities, abs=1e-5)


def test_a_mapping_of_image_paths_with_method_options():
    classes = {name: sorted((ANIMALS / "support" / name).iterdir()) for name in ("bird", "bovine", "fish")}
    classifier = fsd.fit(classes, method="maml", inner_steps=2)
    assert classifier.fitted.learner.inner_steps == 2 and len(classifier.fitted.learner.history) == 3
    queries, truth = _queries()
    assert sum(p.label == t for p, t in zip(classifier.predict(queries), truth)) >= len(truth) - 2


def test_texts_from_a_mapping_and_from_a_file():
    classifier = fsd.fit({"greeting": ["hello there", "hi, how are you?", "good morning"],
                          "weather": ["will it rain tomorrow?", "how hot is it today", "is snow coming"]})
    assert classifier.modality == "text" and classifier.method == "linear"
    assert [p.label for p in classifier.predict(["hey, good to see you", "do I need an umbrella today"])] == [
        "greeting", "weather"]
    from_file = fsd.fit(ROOT / "examples" / "text" / "intents" / "support.csv", method="protonet")
    assert from_file.predict(["play some music"])[0].label in from_file.class_names


def test_bad_input_says_what_to_do():
    with pytest.raises(UserInputError, match="neither a folder"):
        fsd.fit(ROOT / "README.md")
    with pytest.raises(UserInputError, match="every class is empty"):
        fsd.fit({"a": [], "b": []})
    with pytest.raises(CheckpointMissingError, match="python -m fewshot_demo.train"):
        fsd.fit({"a": ["one text", "two"], "b": ["three", "four"]}, method="maml")
    with pytest.raises(UserInputError, match="outside"):
        fsd.fit({"a": ["one text", "two"], "b": ["three", "four"]}, method="baselinepp", steps=10**6)


def test_evaluate_gives_the_bench_numbers_on_the_same_episodes(tmp_path):
    import json

    from fewshot_demo.bench.cli import main

    data = ROOT / "examples" / "text" / "topics" / "support.csv"
    summaries = fsd.evaluate(data, methods=["protonet", "linear"], n_way=3, n_shots=[2], n_query=3, episodes=5)
    assert [(s.method, s.n_shot, s.episodes) for s in summaries] == [("protonet", 2, 5), ("linear", 2, 5)]
    out = tmp_path / "bench.json"
    assert main(["--data", str(data), "--n-way", "3", "--n-shot", "2", "--n-query", "3", "--episodes", "5",
                 "--methods", "protonet", "linear", "--out", str(out), "--no-progress"]) == 0
    bench = json.loads(out.read_text())["results"]
    assert [round(s.accuracy, 4) for s in summaries] == [r["accuracy"] for r in bench]
