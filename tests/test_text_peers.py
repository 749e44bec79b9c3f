"""The peers command on a tiny text CSV, with the optional setfit package made unavailable."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from fewshot_demo.text.peers import PeerRow, main, paired_difference

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


def test_unknown_method_is_a_clear_error(capsys):
    assert main(["--data", str(EXAMPLES / "topics" / "support.csv"), "--methods", "nope@minilm"]) == 2
    assert "unknown method(s) nope" in capsys.readouterr().err
