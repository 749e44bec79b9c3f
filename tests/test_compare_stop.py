"""Stop answers within a second at any point of a comparison: while inputs are prepared, mid-episode."""

from __future__ import annotations

import threading
import time

import torch

from fewshot_demo.bench.compare_run import run_comparison
from fewshot_demo.bench.comparison import ComparisonConfig, ComparisonData
from fewshot_demo.bench.pools import embed_pool
from fewshot_demo.core.runner import EpisodeRun
from fewshot_demo.data.episodes import EpisodeConfig, sample_episodes
from fewshot_demo.data.images import load_image
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.ui import image_tab


def _seconds_to_stop(updates, cancel: threading.Event, when) -> tuple[float, object]:
    """Set ``cancel`` 0.3 s after the first update ``when`` accepts; return (seconds to the next update, it)."""
    set_at = None
    for update in updates:
        if set_at is not None:
            return time.perf_counter() - set_at, update
        if when(update):
            timer = threading.Timer(0.3, cancel.set)
            timer.start()
            timer.join()
            set_at = time.perf_counter()
    raise AssertionError("the run ended before it could be stopped")


def test_stop_while_fine_tuning_inputs_are_prepared(single_thread):
    """Preparing the last-block inputs of 105 images takes seconds; Stop is heard within one chunk."""
    classes, _ = image_tab.example_set("mixed_5way")
    images, labels = [], []
    for name, paths in classes:
        for path in paths:
            images += [load_image(path)] * 3
            labels += [name] * 3
    data = LoadedData("image", images, labels)
    device = torch.device("cpu")
    features = torch.zeros(len(images), 1280)  # the pool's features are not what this test is about
    compared = ComparisonData("stop test", data, "efficientnet_lite0", device=device,
                              pool_for=lambda encoder: embed_pool(data, encoder, device, features=features))
    cancel = threading.Event()
    config = ComparisonConfig(n_way=3, n_shots=(1,), n_episodes=5, methods=("finetune",), measure_memory=False)
    seconds, update = _seconds_to_stop(run_comparison(compared, config, cancel=cancel), cancel,
                                       lambda u: u.message.startswith("Preparing"))
    assert update.kind == "cancelled" and "while preparing" in update.message
    assert seconds < 1.0, seconds


class SlowTrainer(FewShotLearner):
    """Trains for 5 s in 100 steps, reporting each one as the fine-tuning learners do."""

    def __init__(self) -> None:
        super().__init__()
        self.progress = None

    def fit(self, support, support_labels):
        self.n_way = check_support(support, support_labels)
        for step in range(100):
            time.sleep(0.05)
            if self.progress is not None:
                self.progress((step + 1) / 100, f"step {step + 1}")
        return self

    def predict_proba(self, query):
        return torch.full((len(query), self.n_way), 1.0 / self.n_way)


def test_stop_in_the_middle_of_a_long_episode():
    labels = [c for c in range(3) for _ in range(4)]
    episodes = sample_episodes(labels, EpisodeConfig(3, 1, 2), 3, seed=0)
    cancel = threading.Event()
    run = EpisodeRun(SlowTrainer, torch.randn(len(labels), 4), episodes, cancel=cancel)
    threading.Timer(0.3, cancel.set).start()
    began = time.perf_counter()
    outcomes = list(run)
    assert run.cancelled and outcomes == []
    assert time.perf_counter() - began < 1.0
