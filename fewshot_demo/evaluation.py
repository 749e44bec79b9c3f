"""Run learners on episodes and summarise accuracy with a 95% confidence interval."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import Tensor

from fewshot_demo.episodes import Episode
from fewshot_demo.methods.base import FewShotLearner


def mean_and_ci95(values: list[float]) -> tuple[float, float]:
    """Return (mean, 1.96 * std / sqrt(n)) with the population std, as the few-shot literature does."""
    if not values:
        raise ValueError("no values to summarise")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return mean, 1.96 * std / math.sqrt(n)


@dataclass
class EpisodeOutcome:
    """What one learner did on one episode."""

    accuracy: float
    seconds: float
    predictions: Tensor  # (n_query,) predicted episode labels


@dataclass
class EvaluationSummary:
    method: str
    n_shot: int
    episodes: int
    accuracy: float
    ci95: float
    ms_per_episode: float
    peak_mb: float | None = None

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "n_shot": self.n_shot,
            "episodes": self.episodes,
            "accuracy": round(self.accuracy, 4),
            "ci95": round(self.ci95, 4),
            "ms_per_episode": round(self.ms_per_episode, 3),
            **({} if self.peak_mb is None else {"peak_mb": round(self.peak_mb, 2)}),
        }


def run_episode(learner: FewShotLearner, items: Tensor, episode: Episode) -> EpisodeOutcome:
    """Fit ``learner`` on the episode's support items and score its query items."""
    support, query = episode.split(items)
    start = time.perf_counter()
    learner.fit(support, episode.support_labels.to(items.device))
    predictions = learner.predict_proba(query).argmax(dim=1).cpu()
    seconds = time.perf_counter() - start
    accuracy = (predictions == episode.query_labels).float().mean().item()
    return EpisodeOutcome(accuracy=accuracy, seconds=seconds, predictions=predictions)


def evaluate(
    make_learner: Callable[[], FewShotLearner],
    items: Tensor,
    episodes: Iterable[Episode],
    method: str,
    n_shot: int,
    on_episode: Callable[[EpisodeOutcome], None] | None = None,
) -> EvaluationSummary:
    """Evaluate a fresh learner per episode and summarise.

    Args:
        make_learner: builds a new, unfitted learner.
        items: (n_items, ...) pool of inputs (cached features, or raw images for from-scratch nets).
        episodes: the episodes, with indices into ``items``.
        method, n_shot: recorded in the summary.
        on_episode: called after each episode, e.g. to advance a progress bar.
    """
    accuracies, seconds = [], []
    for episode in episodes:
        outcome = run_episode(make_learner(), items, episode)
        accuracies.append(outcome.accuracy)
        seconds.append(outcome.seconds)
        if on_episode is not None:
            on_episode(outcome)
    accuracy, ci95 = mean_and_ci95(accuracies)
    return EvaluationSummary(
        method=method,
        n_shot=n_shot,
        episodes=len(accuracies),
        accuracy=accuracy,
        ci95=ci95,
        ms_per_episode=1000 * sum(seconds) / len(seconds),
    )
