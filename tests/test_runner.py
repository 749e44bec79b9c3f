"""The one episode loop: the same numbers on every path, what is timed, cancelling, threads."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from fewshot_demo.bench.benchmark import run_benchmark
from fewshot_demo.bench.compare_run import run_comparison
from fewshot_demo.bench.comparison import ComparisonConfig, ComparisonData
from fewshot_demo.bench.pools import CachedInputs, EmbeddedPool
from fewshot_demo.core.runner import EpisodeRun, run_episodes
from fewshot_demo.data.episodes import EpisodeConfig, sample_episodes
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.methods import LearnerContext
from fewshot_demo.methods.base import FewShotLearner

N_CLASSES, PER_CLASS, DIM = 6, 12, 16


def _features(seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Gaussian clusters as features: (72, 16) and their labels."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(N_CLASSES, DIM, generator=generator) * 2
    labels = [c for c in range(N_CLASSES) for _ in range(PER_CLASS)]
    return centres[torch.tensor(labels)] + torch.randn(len(labels), DIM, generator=generator), labels


def _pool() -> EmbeddedPool:
    features, labels = _features()
    names = [f"class{c}" for c in range(N_CLASSES)]
    return EmbeddedPool("text", "synthetic", names, torch.tensor(labels), CachedInputs(lambda kind: features, features), 0.0, [])


class Scripted(FewShotLearner):
    """Sleeps a known time in its constructor, fit and predict_proba; predicts class 0; records threads."""

    def __init__(self, construct: float = 0.0, fit: float = 0.0, predict: float = 0.0, on_fit=None) -> None:
        super().__init__()
        time.sleep(construct)
        self.fit_sleep, self.predict_sleep, self.on_fit = fit, predict, on_fit
        self.threads = 0

    def fit(self, support: torch.Tensor, support_labels: torch.Tensor) -> "Scripted":
        time.sleep(self.fit_sleep)
        self.threads = torch.get_num_threads()
        if self.on_fit is not None:
            self.on_fit(self)
        self.n_way = int(support_labels.max()) + 1
        return self

    def predict_proba(self, query: torch.Tensor) -> torch.Tensor:
        time.sleep(self.predict_sleep)
        probabilities = torch.zeros(len(query), self.n_way)
        probabilities[:, 0] = 1.0
        return probabilities


def _recording(**settings) -> tuple:
    """A learner factory that keeps every learner it built."""
    built: list[Scripted] = []

    def make() -> Scripted:
        built.append(Scripted(**settings))
        return built[-1]

    return make, built


def test_bench_comparison_and_the_runner_give_the_same_per_episode_accuracies():
    features, labels = _features()
    pool = _pool()
    methods = ("protonet", "linear", "baselinepp")
    summaries, _ = run_benchmark(pool, methods, n_way=5, n_shots=(1, 3), n_query=4, n_episodes=6, seed=7,
                                 device=torch.device("cpu"), progress=False)
    data = ComparisonData("synthetic", LoadedData("text", [str(i) for i in labels], [f"class{c}" for c in labels]),
                          "synthetic", None, torch.device("cpu"), lambda encoder: pool)
    config = ComparisonConfig(n_way=5, n_shots=(1, 3), n_query=4, n_episodes=6, methods=methods, seed=7)
    last = list(run_comparison(data, config))[-1]
    assert [(s.method, s.n_shot) for s in summaries] == [(r.method, r.n_shot) for r in last.results]
    for bench, compared in zip(summaries, last.results):
        assert (bench.accuracy, bench.ci95, bench.episodes) == (compared.summary.accuracy, compared.summary.ci95, 6)
        episodes = sample_episodes(labels, EpisodeConfig(5, compared.n_shot, 4), 6, seed=7)
        direct = run_episodes(compared.method, features, episodes, context=LearnerContext("synthetic", DIM))
        assert direct.accuracies == compared.episode_accuracies


def test_timing_covers_fit_and_predict_proba_only():
    features, labels = _features()
    episodes = sample_episodes(labels, EpisodeConfig(3, 1, 2), 2, seed=0)
    run = run_episodes(lambda: Scripted(construct=0.3, fit=0.04, predict=0.02), features, episodes)
    for outcome in run.outcomes:
        assert 0.04 <= outcome.fit_seconds < outcome.seconds
        assert 0.06 <= outcome.seconds < 0.25  # the 0.3 s constructor is not counted
    summary = run.summary()
    assert summary.ms_per_episode == pytest.approx(1000 * sum(o.seconds for o in run.outcomes) / 2)
    assert summary.accuracy == pytest.approx(1 / 3) and summary.n_shot == 1 and summary.episodes == 2


def test_cancel_stops_between_episodes():
    features, labels = _features()
    episodes = sample_episodes(labels, EpisodeConfig(3, 1, 2), 10, seed=0)
    cancel = threading.Event()
    fits = []

    def fit_then_cancel(learner: Scripted) -> None:
        fits.append(learner)
        if len(fits) == 3:
            cancel.set()  # set during the third episode: that episode finishes, the fourth never starts

    run = run_episodes(lambda: Scripted(on_fit=fit_then_cancel), features, episodes, cancel=cancel)
    assert run.cancelled and len(run.outcomes) == 3 and len(fits) == 3
    assert run.summary().episodes == 3
    finished = run_episodes(lambda: Scripted(), features, episodes[:2], cancel=threading.Event())
    assert not finished.cancelled and len(finished.outcomes) == 2


def test_iterating_runs_one_episode_per_step_with_a_fresh_learner_each():
    features, labels = _features()
    episodes = sample_episodes(labels, EpisodeConfig(3, 2, 2), 4, seed=1)
    make, built = _recording()
    run = EpisodeRun(make, features, episodes, name="scripted")
    steps = iter(run)
    next(steps)
    assert len(built) == 1 and len(run.outcomes) == 1
    list(steps)
    assert len(built) == 4 and len({id(learner) for learner in built}) == 4
    assert run.summary().method == "scripted"
    with pytest.raises(RuntimeError, match="runs its episodes once"):
        list(run)


def test_feature_vectors_run_on_one_thread_and_pixels_keep_every_thread():
    features, labels = _features()
    pixels = torch.zeros(len(labels), 1, 4, 4)
    episodes = sample_episodes(labels, EpisodeConfig(3, 1, 1), 1, seed=0)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        make, on_features = _recording()
        run_episodes(make, features, episodes)
        make, on_pixels = _recording()
        run_episodes(make, pixels, episodes)
        assert on_features[0].threads == 1 and on_pixels[0].threads == 2
        assert torch.get_num_threads() == 2  # restored after each episode
    finally:
        torch.set_num_threads(previous)


def test_peak_memory_is_recorded_when_asked():
    features, labels = _features()
    episodes = sample_episodes(labels, EpisodeConfig(3, 1, 1), 2, seed=0)
    assert run_episodes("protonet", features, episodes, measure_memory=True).summary().peak_mb is not None
    assert run_episodes("protonet", features, episodes).summary().peak_mb is None


def test_training_validation_runs_the_benchs_episodes_even_on_small_classes():
    from fewshot_demo.data.episodes import choose_n_query
    from fewshot_demo.training.config import TrainConfig
    from fewshot_demo.training.loop import init_state, learner_for, validate
    from fewshot_demo.training.task_pools import TaskPool

    features, labels = _features()
    keep = [i for i, label in enumerate(labels) if i % PER_CLASS < 7 + label]  # classes of 7 to 12 items
    pool = TaskPool(features[keep], torch.tensor([labels[i] for i in keep]), [f"class{c}" for c in range(N_CLASSES)])
    config = TrainConfig(method="protonet", backbone="efficientnet_lite0", n_shots=(1, 5), rank=4, seed=3)
    state = init_state(config, DIM, torch.device("cpu"))
    accuracy = validate(state, config, pool, n_episodes=5)
    expected = []
    for n_shot, count in ((1, 3), (5, 2)):  # 5 episodes: 3 at 1-shot, 2 at 5-shot
        shape = EpisodeConfig(5, n_shot, choose_n_query(pool.labels.tolist(), 5, n_shot))
        episodes = sample_episodes(pool.labels.tolist(), shape, count, seed=config.seed + 1)
        expected += run_episodes(lambda: learner_for(state, config), pool.items, episodes).accuracies
    assert accuracy == pytest.approx(sum(expected) / len(expected))
    assert choose_n_query(pool.labels.tolist(), 5, 5) == 3  # fewer queries where classes are small
