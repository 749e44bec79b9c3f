"""The comparison tells a method that does not apply (skipped) from one that breaks (failed), and runs on."""

from __future__ import annotations

import pytest
import torch

from fewshot_demo.bench.compare_run import run_comparison
from fewshot_demo.bench.comparison import ComparisonConfig, ComparisonData
from fewshot_demo.bench.exports import results_json
from fewshot_demo.bench.pools import CachedInputs, EmbeddedPool
from fewshot_demo.bench.report import skipped_notes
from fewshot_demo.bench.results import NotRun
from fewshot_demo.config.errors import CheckpointMissingError, MethodNotApplicableError
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.methods import MethodSpec, PrototypicalNetwork, register, registry


class Breaks(PrototypicalNetwork):
    """Prototypes whose ``fit`` raises the given error."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def fit(self, support: torch.Tensor, support_labels: torch.Tensor) -> "Breaks":
        raise self.error


def _breaking(error: Exception, from_episode: int = 1):
    """A build function whose learners break from the given episode on (1-based)."""
    built = 0

    def build(context, options) -> PrototypicalNetwork:
        nonlocal built
        built += 1
        return Breaks(error) if built >= from_episode else PrototypicalNetwork()

    return build


def _spec(key: str, build, **fields) -> MethodSpec:
    return MethodSpec(key=key, label=key, description=f"{key}, registered by a test", family="transfer",
                      build=build, **fields)


@pytest.fixture
def test_methods():
    """Four test-only methods, removed from the registry afterwards."""
    specs = [
        _spec("crashes", _breaking(RuntimeError("the learner crashed"), from_episode=3)),
        _spec("rejects", _breaking(ValueError("a bad value inside the learner"))),
        _spec("images_only", lambda context, options: PrototypicalNetwork(), modalities=("image",)),
        _spec("not_here", _breaking(MethodNotApplicableError("not for these inputs"))),
    ]
    for spec in specs:
        register(spec)
    yield [spec.key for spec in specs]
    for spec in specs:
        registry._REGISTRY.pop(spec.key, None)


def _synthetic() -> ComparisonData:
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 8, generator=generator) * 3
    labels = torch.arange(5).repeat_interleave(10)
    features = centres[labels] + torch.randn(len(labels), 8, generator=generator)
    names = [f"class{c}" for c in labels.tolist()]
    data = LoadedData("text", [f"item {i}" for i in range(len(names))], names)
    pool = EmbeddedPool("text", "synthetic", data.class_names, labels, CachedInputs(lambda kind: features, features), 0.0, [])
    return ComparisonData("synthetic", data, "synthetic", None, torch.device("cpu"), lambda encoder: pool)


def test_a_crash_is_failed_a_method_that_does_not_apply_is_skipped_and_the_rest_runs(test_methods):
    methods = ("protonet", "crashes", "rejects", "images_only", "not_here", "linear")
    config = ComparisonConfig(n_way=5, n_shots=(1,), n_query=3, n_episodes=5, methods=methods)
    data = _synthetic()
    updates = list(run_comparison(data, config))
    last = updates[-1]
    assert last.kind == "done" and [r.method for r in last.results] == ["protonet", "linear"]
    assert last.done == last.total == 30
    assert [u.kind for u in updates if u.kind in ("failed", "skipped")] == ["failed", "failed", "skipped", "skipped"]
    assert last.failed == ["crashes: the learner crashed", "rejects: a bad value inside the learner"]
    assert [s.split(":")[0] for s in last.skipped] == ["images_only", "not_here"]
    assert "works on image data, not text" in last.skipped[0]
    by_method = {n.method: n for n in last.not_run}
    assert by_method["crashes"].error is RuntimeError and by_method["crashes"].failed
    assert by_method["rejects"].error is ValueError and by_method["rejects"].failed
    assert issubclass(by_method["images_only"].error, MethodNotApplicableError) and not by_method["images_only"].failed
    assert by_method["not_here"].error is MethodNotApplicableError and not by_method["not_here"].failed
    crashed = next(u for u in updates if u.kind == "failed")
    assert "crashes 1-shot failed at episode 3 of 5 (RuntimeError: the learner crashed)" in crashed.message
    assert "2 method(s) skipped, 2 failed" in last.message
    exported = results_json(data, config, last)
    assert exported["failed"] == last.failed and exported["skipped"] == last.skipped
    assert {"method": "crashes", "n_shot": 1, "error": "RuntimeError", "reason": "the learner crashed",
            "failed": True} in exported["not_run"]


def test_the_report_groups_missing_checkpoints_by_error_type_not_by_wording():
    not_run = [
        NotRun("maml", 1, CheckpointMissingError, "any wording at all"),
        NotRun("reptile", 1, CheckpointMissingError, "worded differently"),
        NotRun("maml", 5, CheckpointMissingError, "any wording at all"),
        NotRun("finetune", 1, MethodNotApplicableError, "finetune consumes 'tokens'"),
        NotRun("linear", 5, RuntimeError, "out of memory"),
    ]
    notes = skipped_notes(not_run, "minilm")
    assert notes[0].startswith("not run: maml, reptile (no meta-trained checkpoint for minilm; meta-training covers")
    assert notes[1:] == ["not run: finetune: finetune consumes 'tokens'", "failed: linear (RuntimeError): out of memory"]
