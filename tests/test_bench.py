"""The bench command end to end on a tiny image folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fewshot_demo.bench.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """5 classes x 7 images (support + query of the mixed example set), plus a 3-image class."""
    root = tmp_path_factory.mktemp("tiny")
    for part in ("support", "query"):
        for class_dir in (EXAMPLES / "mixed_5way" / part).iterdir():
            target = root / class_dir.name
            target.mkdir(exist_ok=True)
            for image in class_dir.iterdir():
                shutil.copy(image, target / image.name)
    small = root / "tiny_class"
    small.mkdir()
    for image in list((EXAMPLES / "animals" / "support" / "fish").iterdir())[:3]:
        shutil.copy(image, small / image.name)
    (small / "notes.txt").write_text("not an image")
    return root


def test_bench_writes_the_documented_json(tiny_folder, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main([
        "--data", str(tiny_folder), "--n-way", "5", "--n-shot", "1", "5", "--n-query", "2",
        "--episodes", "20", "--methods", "protonet", "linear", "--seed", "0", "--out", str(out), "--no-progress",
    ])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["modality"] == "image" and result["backbone"] == "efficientnet_lite0"
    assert {"device", "n_way", "n_query", "seed", "embed_ms_per_item", "results"} <= set(result)
    assert [(r["method"], r["n_shot"]) for r in result["results"]] == [
        ("protonet", 1), ("linear", 1), ("protonet", 5), ("linear", 5)
    ]
    for row in result["results"]:
        assert row["episodes"] == 20 and 0.2 <= row["accuracy"] <= 1.0 and row["ci95"] >= 0
        assert row["ms_per_episode"] > 0
    five_shot = {r["method"]: r["accuracy"] for r in result["results"] if r["n_shot"] == 5}
    assert min(five_shot.values()) >= 0.7  # real features on easy classes, not chance (0.2)
    printed = capsys.readouterr()
    assert "protonet" in printed.out and "accuracy" in printed.out
    assert "tiny_class" in printed.err and "notes.txt" in printed.err  # dropped class and skipped file are said


def test_bench_is_reproducible_with_the_same_seed(tiny_folder, tmp_path):
    runs = []
    for name in ("a.json", "b.json"):
        main(["--data", str(tiny_folder), "--n-shot", "1", "--n-query", "2", "--episodes", "10",
              "--methods", "protonet", "--out", str(tmp_path / name), "--no-progress"])
        runs.append(json.loads((tmp_path / name).read_text())["results"][0]["accuracy"])
    assert runs[0] == runs[1]


def test_bench_fails_clearly_when_too_few_classes_remain(tiny_folder, capsys):
    code = main(["--data", str(tiny_folder), "--n-way", "5", "--n-shot", "5", "--n-query", "5",
                 "--episodes", "2", "--methods", "protonet", "--no-progress"])
    assert code == 2
    assert "need 5 classes with at least 10 items" in capsys.readouterr().err


def test_bench_rejects_unknown_methods_and_missing_data(tmp_path, capsys):
    assert main(["--data", str(tmp_path), "--methods", "nope", "--no-progress"]) == 2
    assert "unknown method(s) nope" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert "neither a folder" in capsys.readouterr().err


def test_bench_prints_paired_differences_on_the_same_episodes(tiny_folder, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["--data", str(tiny_folder), "--n-shot", "1", "--n-query", "2", "--episodes", "6", "--methods",
                 "protonet", "linear", "--paired-with", "linear", "--out", str(out), "--no-progress"])
    assert code == 0
    (row,) = json.loads(out.read_text())["paired"]
    assert row["method"] == "protonet" and row["minus"] == "linear" and row["n_shot"] == 1 and row["ci95"] >= 0
    assert "1-shot protonet - linear: " in capsys.readouterr().out
    assert main(["--data", str(tiny_folder), "--methods", "protonet", "--paired-with", "linear", "--no-progress"]) == 2
