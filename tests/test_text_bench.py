"""The bench command on a tiny text CSV: same episode protocol and JSON as for images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fewshot_demo.bench.cli import main
from fewshot_demo.encoders.registry import default_encoder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "text"


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory) -> Path:
    """The 'topics' example set (5 classes x 8 texts) plus a blank row, a duplicate and a 2-text class."""
    path = tmp_path_factory.mktemp("text") / "tiny.csv"
    rows = (EXAMPLES / "topics" / "support.csv").read_text(encoding="utf-8").splitlines()
    extra = ['"",sport', rows[1], "Ein kurzer Satz auf Deutsch,tiny_class", "שלום,tiny_class"]
    path.write_text("\n".join(rows + extra) + "\n", encoding="utf-8")
    return path


def test_bench_on_a_text_csv_writes_the_documented_json(tiny_csv, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main([
        "--data", str(tiny_csv), "--n-way", "5", "--n-shot", "1", "3", "--n-query", "4", "--episodes", "12",
        "--methods", "linear", "protonet", "--seed", "0", "--out", str(out), "--no-progress",
    ])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["modality"] == "text" and result["encoder"] == default_encoder("text") == "minilm:layers"
    assert result["items"] == 42 and result["classes"] == 6  # blank row skipped, duplicate merged
    assert [(r["method"], r["n_shot"]) for r in result["results"]] == [
        ("linear", 1), ("protonet", 1), ("linear", 3), ("protonet", 3)
    ]
    for row in result["results"]:
        assert row["episodes"] == 12 and 0.2 <= row["accuracy"] <= 1.0 and row["ci95"] >= 0
    assert min(r["accuracy"] for r in result["results"] if r["n_shot"] == 3) >= 0.7
    printed = capsys.readouterr()
    assert "tiny_class" in printed.err  # the class too small for the episodes is named
    assert "duplicate" in printed.err and "empty text" in printed.err  # cleaning is reported


def test_bench_runs_the_finetune_learner_on_tokens(tiny_csv, tmp_path):
    out = tmp_path / "finetune.json"
    code = main([
        "--data", str(tiny_csv), "--n-shot", "1", "--n-query", "3", "--episodes", "2",
        "--methods", "finetune", "--out", str(out), "--no-progress",
    ])
    assert code == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["method"] == "finetune" and row["accuracy"] >= 0.4  # chance is 0.2


def test_bench_reports_bad_text_files(tmp_path, capsys):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("sentence,category\nhello,greeting\n", encoding="utf-8")
    assert main(["--data", str(wrong), "--no-progress"]) == 2
    assert "columns 'text' and 'label'" in capsys.readouterr().err
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("text\tlabel\ncafé\tdrink\n".encode("latin-1"))
    assert main(["--data", str(latin1), "--no-progress"]) == 2
    assert "not UTF-8" in capsys.readouterr().err
