"""The comparison core: CI arithmetic, identical episodes, cancelling, the reading, exports, new learners."""

from __future__ import annotations

import json
import math
import threading
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from fewshot_demo.bench import exports
from fewshot_demo.bench.compare_run import run_comparison
from fewshot_demo.bench.comparison import ComparisonConfig, ComparisonData
from fewshot_demo.bench.exports import results_csv, results_json
from fewshot_demo.bench.pools import CachedInputs, EmbeddedPool
from fewshot_demo.bench.reading import reading
from fewshot_demo.config.settings import settings
from fewshot_demo.core import runner
from fewshot_demo.core.evaluation import (
    EvaluationSummary,
    PeakMemory,
    mean_and_ci95,
    paired_difference,
)
from fewshot_demo.data.builtin import BUILTIN_DATASETS, load_dataset
from fewshot_demo.data.episodes import choose_n_query
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.data.zips import data_from_upload
from fewshot_demo.methods import LearnerContext, make_learner

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


# ------------------------------------------------------------------------------------ statistics
def test_ci95_matches_hand_computed_values():
    mean, ci = mean_and_ci95([0.6, 0.8])  # population std 0.1
    assert mean == pytest.approx(0.7) and ci == pytest.approx(1.96 * 0.1 / math.sqrt(2))
    mean, ci = mean_and_ci95([0.0, 1.0] * 50)  # std 0.5, n 100
    assert mean == pytest.approx(0.5) and ci == pytest.approx(0.098)
    assert mean_and_ci95([0.8, 0.8, 0.8]) == pytest.approx((0.8, 0.0))


def test_paired_difference_uses_per_episode_differences():
    mean, ci = paired_difference([0.9, 0.8, 1.0, 0.7], [0.8, 0.7, 0.9, 0.6])
    assert mean == pytest.approx(0.1) and ci == pytest.approx(0.0, abs=1e-12)  # always exactly +0.1
    with pytest.raises(ValueError, match="same episodes"):
        paired_difference([0.5], [0.5, 0.6])


def test_n_query_keeps_every_class_when_it_can():
    labels = [0] * 35 + [1] * 26 + [2] * 24 + [3] * 21 + [4] * 18 + [5] * 11
    assert choose_n_query(labels, n_way=5, max_shot=5) == 6  # smallest class 11 - 5 shots
    assert choose_n_query(labels, n_way=5, max_shot=10) == 8  # 5th largest 18 - 10
    with pytest.raises(ValueError, match="Lower K-shot or N-way"):
        choose_n_query(labels, n_way=5, max_shot=18)


# ----------------------------------------------------------------------------------- synthetic data
def _synthetic(n_classes: int = 6, per_class: int = 20, dim: int = 16, seed: int = 0) -> ComparisonData:
    """Gaussian clusters as 'features'; no backbone involved."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=generator) * 3
    features = torch.cat([centres[c] + torch.randn(per_class, dim, generator=generator) for c in range(n_classes)])
    names = [f"class{c}" for c in range(n_classes) for _ in range(per_class)]
    data = LoadedData("text", [f"item {i}" for i in range(len(names))], names)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    pool = EmbeddedPool("text", "synthetic", data.class_names, labels, CachedInputs(lambda kind: features, features), 0.0, [])
    return ComparisonData("synthetic", data, "synthetic", None, torch.device("cpu"), lambda encoder: pool)


def test_every_method_sees_identical_episodes(monkeypatch):
    seen: dict[str, list[tuple]] = {}
    original = runner.run_episode

    def spy(learner, items, episode):
        seen.setdefault(type(learner).__name__, []).append(
            (episode.class_ids, episode.support_indices.tolist(), episode.query_indices.tolist())
        )
        return original(learner, items, episode)

    monkeypatch.setattr(runner, "run_episode", spy)
    config = ComparisonConfig(n_way=5, n_shots=(1, 5), n_query=5, n_episodes=8, methods=("protonet", "linear", "baselinepp"))
    updates = list(run_comparison(_synthetic(), config))
    assert updates[-1].kind == "done"
    results = updates[-1].results
    assert [(r.method, r.n_shot) for r in results] == [(m, k) for k in (1, 5) for m in ("protonet", "linear", "baselinepp")]
    assert len(seen) == 3 and all(len(calls) == 16 for calls in seen.values())
    first, *others = seen.values()
    assert all(calls == first for calls in others)  # the same tasks, in the same order
    for k in (1, 5):
        assert len({r.episodes_id for r in results if r.n_shot == k}) == 1
    assert results[0].episodes_id != results[3].episodes_id  # 1-shot and 5-shot are different episodes
    for r in results:
        assert r.confusion.sum() == 8 * 5 * 5  # every query counted once
        assert r.summary.accuracy == pytest.approx(sum(r.episode_accuracies) / 8)
        assert 0.0 <= r.summary.ci95 and r.summary.ms_per_episode > 0


def test_partial_results_stream_and_confusion_matches_accuracy():
    config = ComparisonConfig(n_way=5, n_shots=(5,), n_query=5, n_episodes=12, methods=("protonet", "linear"))
    updates = list(run_comparison(_synthetic(), config, progress_every=5))
    kinds = [u.kind for u in updates]
    assert kinds.index("result") < len(kinds) - 2  # protonet's result comes before linear finishes
    assert "progress" in kinds and kinds[-1] == "done" and updates[-1].done == updates[-1].total == 24
    result = updates[-1].results[0]
    assert result.confusion.trace() / result.confusion.sum() == pytest.approx(result.summary.accuracy)
    wrong = sum(result.mistakes.values())
    assert wrong == result.confusion.sum() - result.confusion.trace()
    per_class = [a for a in result.per_class_accuracy() if a is not None]
    assert all(0.0 <= a <= 1.0 for a in per_class)


def test_cancel_stops_between_episodes_and_drops_the_partial_method():
    cancel = threading.Event()
    config = ComparisonConfig(n_way=5, n_shots=(5,), n_query=5, n_episodes=30, methods=("protonet", "linear"))
    updates = []
    for update in run_comparison(_synthetic(), config, cancel=cancel, progress_every=5):
        updates.append(update)
        if update.kind == "progress" and update.message.startswith("Linear probe"):
            cancel.set()
    last = updates[-1]
    assert last.kind == "cancelled" and "partial run is not shown" in last.message
    assert [r.method for r in last.results] == ["protonet"]
    assert last.done < last.total


def test_a_method_that_cannot_run_is_skipped_with_its_reason():
    config = ComparisonConfig(n_way=5, n_shots=(1,), n_query=3, n_episodes=3, methods=("reptile", "protonet"))
    last = list(run_comparison(_synthetic(), config))[-1]
    assert last.kind == "done" and [r.method for r in last.results] == ["protonet"]
    assert last.skipped and last.skipped[0].startswith("reptile:") and "checkpoint" in last.skipped[0]


def test_config_errors_say_the_fix():
    with pytest.raises(ValueError, match="at least one K-shot"):
        ComparisonConfig(n_shots=())
    with pytest.raises(ValueError, match="unknown method"):
        ComparisonConfig(methods=("protonet", "magic"))
    with pytest.raises(ValueError, match="between 1 and"):
        ComparisonConfig(n_episodes=0)


# ------------------------------------------------------------------------------------------ reading
def _summary(method: str, accuracy: float, ci95: float, n_shot: int = 5, ms: float = 1.0) -> EvaluationSummary:
    return EvaluationSummary(method, n_shot, 100, accuracy, ci95, ms)


def test_reading_says_when_the_gap_is_larger_than_the_intervals():
    text = reading([_summary("linear", 0.90, 0.01), _summary("maml", 0.80, 0.02)])
    assert "Linear probe wins with 90.0% ± 1.0%, 10.0 points ahead of MAML" in text
    assert "do not overlap" in text and "Just transfer" in text
    assert "Chen et al. 2019" in text and "Tian et al. 2020" in text


def test_reading_says_when_intervals_overlap():
    text = reading([_summary("maml", 0.81, 0.03), _summary("linear", 0.80, 0.03)])
    assert "MAML wins" in text and "1.0 points ahead" in text
    assert "intervals overlap" in text and "within the intervals" in text
    assert "Just transfer" in text  # a meta lead inside the intervals is no reason to meta-learn


def test_reading_uses_the_paired_test_and_reports_cost():
    config = ComparisonConfig(n_way=5, n_shots=(5,), n_query=5, n_episodes=10, methods=("protonet", "linear"))
    last = list(run_comparison(_synthetic(), config))[-1]
    text = reading(last.summaries(), last.results)
    assert "paired difference" in text
    assert reading([]) == "No results yet."


# ----------------------------------------------------------------------------------------- exports
def test_csv_and_json_exports_have_the_documented_shape():
    config = ComparisonConfig(n_way=5, n_shots=(1, 5), n_query=4, n_episodes=5, methods=("protonet", "baselinepp"))
    data = _synthetic()
    last = list(run_comparison(data, config))[-1]
    rows = results_csv("synthetic", 5, last.results).splitlines()
    assert rows[0] == ",".join(exports.CSV_COLUMNS) and len(rows) == 5
    result = json.loads(json.dumps(results_json(data, config, last)))
    assert {"dataset", "modality", "device", "n_way", "n_shots", "n_query", "episodes", "seed", "versions",
            "results", "per_class_accuracy", "reading", "notes", "skipped", "status"} <= set(result)
    assert result["status"] == "done" and result["n_query"] == 4
    for row in result["results"]:
        assert {"method", "n_shot", "episodes", "accuracy", "ci95", "ms_per_episode", "peak_mb", "family",
                "encoder", "episodes_id"} <= set(row)
        assert row["peak_mb"] >= 0
    assert set(result["per_class_accuracy"]["protonet/5"]) == set(data.class_names)


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory("cpu") as memory:
        block = torch.ones(25_000_000)  # 100 MB
        block += 1
    assert memory.peak_mb is not None and memory.peak_mb >= 80
    del block


# ------------------------------------------------------------------------------------ new learners
def test_baselinepp_learns_a_scale_and_lowers_the_support_loss():
    generator = torch.Generator().manual_seed(0)
    support = torch.randn(15, 32, generator=generator).abs()
    labels = torch.arange(3).repeat_interleave(5)
    support[labels == 1, :8] += 2.0
    support[labels == 2, 8:16] += 2.0
    learner = make_learner("baselinepp", LearnerContext("x", 32))
    learner.fit(support, labels)
    assert learner.losses[-1] < learner.losses[0]
    assert float(learner.log_scale.exp()) != pytest.approx(10.0)  # the scale is learned
    probabilities = learner.predict_proba(support)
    assert probabilities.shape == (15, 3) and torch.allclose(probabilities.sum(1), torch.ones(15))
    assert (probabilities.argmax(1) == labels).float().mean() == 1.0
    with pytest.raises(ValueError, match="feature vectors"):
        learner.fit(torch.zeros(6, 1, 28, 28), torch.arange(2).repeat_interleave(3))


def test_finetune_prepare_reproduces_the_backbone_and_training_lowers_the_loss(backbone):
    from PIL import Image

    from fewshot_demo.methods.finetune import (
        ImageFinetune,
        ImageFinetuneConfig,
        last_stage,
    )

    images = [Image.open(p).convert("RGB") for p in sorted((EXAMPLES / "animals" / "support").glob("*/*"))[:6]]
    inputs = backbone.prepare("last_block_input", images)
    assert inputs.shape == (6, 192, 7, 7) and not inputs.requires_grad
    with torch.no_grad():
        batch = torch.stack([backbone.preprocess(i) for i in images])
        expected = backbone.model((batch - backbone._mean) / backbone._std)  # pooled features, no flip
        assert torch.allclose(last_stage(backbone.model).eval()(inputs), expected, atol=1e-4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    learner = ImageFinetune(backbone.model, ImageFinetuneConfig(steps=3))
    before = [p.clone() for p in backbone.model.blocks[-1].parameters()]
    learner.fit(inputs, labels)
    assert learner.losses[-1] < learner.losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, backbone.model.blocks[-1].parameters()))  # shared net untouched
    assert learner.predict_proba(inputs).shape == (6, 3)
    with pytest.raises(ValueError, match="last_block_input"):
        learner.fit(torch.zeros(6, 1280), labels)


def test_finetune_name_dispatches_on_the_context():
    from fewshot_demo.methods.finetune import ImageFinetune

    assert isinstance(make_learner("finetune", LearnerContext("efficientnet_lite0", 1280)), ImageFinetune)
    from fewshot_demo.config.errors import InputKindUnsupportedError

    with pytest.raises(InputKindUnsupportedError, match="'pixels28' cannot prepare"):
        make_learner("finetune", LearnerContext("pixels28", 1))


# ------------------------------------------------------------------------------------------- data
def test_every_builtin_data_set_names_its_install_command(monkeypatch, tmp_path):
    assert {"tuxpaint", "fashion_mnist", "bbc", "chatterbot"} <= set(BUILTIN_DATASETS)
    assert {BUILTIN_DATASETS[i].modality for i in BUILTIN_DATASETS} == {"image", "text"}
    for spec in BUILTIN_DATASETS.values():
        assert spec.install.startswith(("apt-get install", "pip install"))
    monkeypatch.setenv("TUXPAINT_STAMPS_DIR", str(tmp_path / "missing"))
    settings.cache_clear()
    spec = BUILTIN_DATASETS["tuxpaint"]
    assert "apt-get install tuxpaint-stamps-default" in spec.choice_label()
    with pytest.raises(ValueError, match="apt-get install tuxpaint-stamps-default"):
        load_dataset("tuxpaint")


def test_chatterbot_loads_when_installed():
    if not BUILTIN_DATASETS["chatterbot"].is_installed():
        pytest.skip("chatterbot-corpus is not installed (pip install chatterbot-corpus)")
    data = load_dataset("chatterbot")
    assert data.modality == "text" and len(data.class_names) == 10 and len(data.items) == 643


def test_upload_zip_of_class_folders_and_csv(tmp_path):
    archive = tmp_path / "animals.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((EXAMPLES / "animals" / "support").glob("*/*")):
            zipped.write(path, f"animals/{path.parent.name}/{path.name}")
        zipped.writestr("animals/bird/readme.txt", "not an image")
    data = data_from_upload(archive)
    assert data.modality == "image" and data.class_names == ["bird", "bovine", "fish"]
    assert any("readme.txt" in note for note in data.notes)
    table = tmp_path / "texts.csv"
    table.write_text("text,label\nhello there,greeting\nhi,greeting\nsell shares,finance\n")
    data = data_from_upload(table)
    assert data.modality == "text" and Counter(data.labels) == {"greeting": 2, "finance": 1}


def test_unsafe_or_wrong_uploads_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../../escape.png", b"x")
    with pytest.raises(ValueError, match="unsafe path"):
        data_from_upload(archive)
    other = tmp_path / "notes.pdf"
    other.write_bytes(b"%PDF")
    with pytest.raises(ValueError, match="upload a .zip"):
        data_from_upload(other)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LoadedData("text", ["a", "b"], ["x", "x"])


def test_tab_data_wraps_what_the_user_entered_elsewhere():
    from fewshot_demo.ui.compare_tab import tab_data

    paths = sorted((EXAMPLES / "animals" / "support").glob("*/*"))
    data = tab_data("image", [str(p) for p in paths], [p.parent.name for p in paths])
    assert data.modality == "image" and data.class_names == ["bird", "bovine", "fish"]
    assert all(max(image.size) <= 320 for image in data.items)  # kept small in memory
    text = tab_data("text", ["hello", "hi", "buy shares"], ["greeting", "greeting", "finance"])
    assert ComparisonData.from_data("tab", text, torch.device("cpu")).encoder == "minilm"
    with pytest.raises(ValueError, match="one label per item"):
        LoadedData("text", ["a", "b"], ["x"])
