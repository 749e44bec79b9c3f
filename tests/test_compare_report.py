"""The README's results command on a tiny stand-in data set: a Markdown table with date, device and versions."""

from __future__ import annotations

import json

from fewshot_demo.bench import report
from fewshot_demo.config.settings import settings
from fewshot_demo.data import builtin
from fewshot_demo.data.builtin import BuiltinDataset
from fewshot_demo.data.labelled import LoadedData

TOPICS = {
    "sport": ["The striker scored twice", "A late goal won the cup", "The team lost the final", "Record run in the marathon"],
    "weather": ["Heavy rain expected tomorrow", "A sunny and warm weekend", "Snow closes the roads", "Strong winds on the coast"],
    "food": ["Bake the bread for an hour", "A recipe for tomato soup", "Fresh pasta with basil", "Grill the fish with lemon"],
}


def _tiny() -> LoadedData:
    return LoadedData("text", [t for texts in TOPICS.values() for t in texts], [n for n, texts in TOPICS.items() for _ in texts])


def test_report_writes_a_table_with_date_device_and_versions(tmp_path, monkeypatch):
    tiny = BuiltinDataset("tiny", "Tiny topics (3 classes, text)", "text", "minilm", None, "pip install nothing",
                          "Hand-written.", lambda: True, _tiny)
    missing = BuiltinDataset("gone", "Missing set", "image", "efficientnet_lite0", None, "apt-get install gone",
                             "Not here.", lambda: False, _tiny)
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "tiny", tiny)
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "gone", missing)
    monkeypatch.setattr(report, "BUILTIN_DATASETS", builtin.BUILTIN_DATASETS)
    monkeypatch.setenv("FEWSHOT_FEATURE_CACHE", str(tmp_path / "cache"))
    settings.cache_clear()
    out, dump = tmp_path / "results.md", tmp_path / "results.json"
    code = report.main([
        "--out", str(out), "--json", str(dump), "--datasets", "tiny", "gone", "--methods", "protonet", "linear", "maml",
        "--shots", "1", "2", "--n-way", "3", "--episodes", "4", "--device", "cpu",
    ])
    assert code == 0
    text = out.read_text()
    assert text.startswith("## Results")
    assert "python -m fewshot_demo.bench.report" in text and "UTC" in text and "device: cpu" in text
    assert "torch " in text and "fewshot_demo " in text
    assert "| method | family | encoder | 1-shot accuracy | 1-shot ms/episode | 2-shot accuracy | 2-shot ms/episode |" in text
    assert "| Linear probe | transfer | minilm |" in text and "| ProtoNet |" in text
    assert "not run: maml (no meta-trained checkpoint for minilm; meta-training covers the efficientnet_lite0 and pixels28" in text
    assert "Not installed: `apt-get install gone`" in text
    (result,) = json.loads(dump.read_text())
    assert result["dataset"] == "tiny" and len(result["results"]) == 4
    assert all("peak_mb" in row for row in result["results"])


def test_report_refuses_an_unknown_data_set(capsys):
    assert report.main(["--datasets", "imagenet"]) == 2
    assert "unknown data set" in capsys.readouterr().err
