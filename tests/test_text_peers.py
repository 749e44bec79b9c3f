"""The peers command on a tiny text CSV, with the optional setfit package made unavailable."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fewshot_demo.bench.peer_rows import PeerRow, merge_rows, paired_difference
from fewshot_demo.bench.text_peers import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "text"


def test_peers_runs_our_methods_and_sklearn_and_skips_setfit_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "setfit", None)  # as if not installed: importing it raises ImportError
    out = tmp_path / "peers.json"
    code = main([
        "--data", str(EXAMPLES / "topics" / "support.csv"), "--n-shot", "1", "3", "--n-query", "4",
        "--episodes", "4", "--setfit-episodes", "2", "--methods", "linear@minilm", "linear@minilm:layers",
        "--out", str(out),
    ])
    assert code == 0
    captured = capsys.readouterr()
    assert "pip install setfit" in captured.err
    result = json.loads(out.read_text())
    has_sklearn = importlib.util.find_spec("sklearn") is not None
    methods = ["linear@minilm", "linear@minilm:layers"] + (["sklearn_lr"] if has_sklearn else [])
    assert [(r["method"], r["n_shot"]) for r in result["results"]] == [(m, s) for s in (1, 3) for m in methods]
    assert all(r["episodes"] == 4 and 0 <= r["accuracy"] <= 1 and r["train_s"] >= 0 for r in result["results"])
    assert all(len(r["per_episode"]) == 4 and abs(sum(r["per_episode"]) / 4 - r["accuracy"]) < 1e-3 for r in result["results"])
    assert result["time_vs_setfit"] == []
    if has_sklearn:
        assert {(d["method"], d["peer"], d["episodes"]) for d in result["paired_differences"]} == {
            (m, "sklearn_lr", 4) for m in methods[:2]
        }
        assert "linear@minilm:layers - sklearn_lr" in captured.out


def test_paired_difference_uses_the_episodes_both_ran():
    ours = PeerRow("finetune@minilm", "minilm", 5, [1.0, 0.5, 0.5], [1.0, 1.0, 1.0])
    peer = PeerRow("setfit", "minilm", 5, [0.5, 0.5], [3.0, 3.0])
    difference = paired_difference(ours, peer)
    assert difference["episodes"] == 2 and difference["difference"] == 0.25
    later = PeerRow("setfit", "minilm", 5, [0.5, 1.0], [3.0, 3.0], first_episode=1)  # episodes 1 and 2
    assert paired_difference(ours, later)["difference"] == -0.25
    assert paired_difference(ours, PeerRow("setfit", "minilm", 5, [0.5], [3.0], first_episode=3)) is None


def test_merge_joins_consecutive_ranges_and_refuses_gaps():
    parts = [PeerRow("setfit", "minilm", 8, [0.75], [2.0], first_episode=2),
             PeerRow("setfit", "minilm", 8, [0.25, 0.5], [1.0, 1.0])]
    (merged,) = merge_rows(parts)
    assert merged.accuracies == [0.25, 0.5, 0.75] and merged.train_seconds == [1.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="do not follow"):
        merge_rows([parts[1], PeerRow("setfit", "minilm", 8, [0.75], [2.0], first_episode=3)])


def test_split_runs_merge_into_the_single_run(tmp_path, capsys):
    """Slow episodes 0-1 and 2-3 in two runs, merged, equal the run over 0-3 (same episodes, same pairs)."""
    common = ["--data", str(EXAMPLES / "topics" / "support.csv"), "--n-shot", "2", "--n-query", "3",
              "--methods", "finetune@minilm", "--peers"]
    whole, first, second, merged = (tmp_path / f"{name}.json" for name in ("whole", "first", "second", "merged"))
    assert main(common + ["--episodes", "0", "--setfit-episodes", "4", "--out", str(whole)]) == 0
    assert main(common + ["--episodes", "0", "--setfit-episodes", "2", "--out", str(first)]) == 0
    assert main(common + ["--episodes", "0", "--slow-from", "2", "--setfit-episodes", "2", "--out", str(second)]) == 0
    assert main(["merge", str(second), str(first), "--out", str(merged)]) == 0
    (row,) = json.loads(merged.read_text())["results"]
    (reference,) = json.loads(whole.read_text())["results"]
    assert row["first_episode"] == 0 and row["per_episode"] == reference["per_episode"]
    assert main(["merge", str(first), str(first)]) == 2
    assert "do not follow" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"data": "x", "n_way": 5, "n_query": 3, "seed": 0}')
    assert main(["merge", str(first), str(tmp_path / "other.json")]) == 2
    assert "differ in data" in capsys.readouterr().err
    (tmp_path / "wrong.json").write_text("{}")
    assert main(["merge", str(tmp_path / "wrong.json")]) == 2
    assert "not the JSON that peers --out writes" in capsys.readouterr().err


def test_unknown_method_is_a_clear_error(capsys):
    assert main(["--data", str(EXAMPLES / "topics" / "support.csv"), "--methods", "nope@minilm"]) == 2
    assert "unknown method(s) nope" in capsys.readouterr().err
    assert main(["--data", str(EXAMPLES / "topics" / "support.csv"), "--slow-from", "-1"]) == 2
    assert "--slow-from must be 0 or more" in capsys.readouterr().err
