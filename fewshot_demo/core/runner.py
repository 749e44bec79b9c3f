"""The one episode loop: a method over a list of episodes, a fresh learner for every episode.

    run = run_episodes("linear", items, episodes, context=LearnerContext("efficientnet_lite0", 1280))
    run.summary()        # EvaluationSummary: accuracy, 95% CI, ms per episode, peak MB
    run.accuracies       # per episode, in episode order (for paired comparisons)

    run = EpisodeRun("maml", items, episodes, context=context, cancel=stop)
    for number, outcome in enumerate(run, start=1):   # each step runs one episode
        ...                                           # e.g. yield progress to a UI

The bench, the comparison, the text peers, and the training command's validation and ``train
evaluate`` all run their episodes here, on episodes from ``episodes.sample_episodes``, so their
numbers mean the same thing.

Timing: ``EpisodeOutcome.seconds`` is ``fit`` on the episode's support set plus ``predict_proba``
on its query set, and nothing else. Building the learner, selecting and moving the episode's
inputs and scoring the predictions are outside it; on CUDA the clock stops only once the device has
finished the work. ``fit_seconds`` is the ``fit`` part of it (the text peers' training time).

Threads: on the CPU, learners on feature vectors ((n_items, d) inputs) run each episode on one
intra-op thread (``device.one_thread``): they are dozens of tiny operations, several times faster on
one thread when the CPU is shared. Inputs with more axes (images for a Conv-4, token ids) keep every
thread.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from fewshot_demo.core.evaluation import EvaluationSummary, PeakMemory, mean_and_ci95
from fewshot_demo.data.episodes import Episode
from fewshot_demo.methods import LearnerContext, make_learner
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.runtime.device import one_thread
from fewshot_demo.runtime.priority import PRIORITY


@dataclass
class EpisodeOutcome:
    """What one learner did on one episode.

    Attributes:
        accuracy: the fraction of the episode's queries predicted right.
        seconds: ``fit`` plus ``predict_proba`` (see the module docstring).
        fit_seconds: the ``fit`` part of ``seconds``.
        predictions: (n_query,) predicted episode labels, on the CPU.
    """

    accuracy: float
    seconds: float
    fit_seconds: float
    predictions: Tensor


def _finish(device: torch.device) -> None:
    """Wait until the device has done the work queued so far (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_episode(learner: FewShotLearner, items: Tensor, episode: Episode) -> EpisodeOutcome:
    """Fit ``learner`` on the episode's support items and score its query items.

    Args:
        learner: a fresh, unfitted learner.
        items: (n_items, ...) pool of inputs; the episode holds indices into it.
        episode: the task.
    """
    support, query = episode.split(items)
    support_labels = episode.support_labels.to(items.device)
    start = time.perf_counter()
    learner.fit(support, support_labels)
    _finish(items.device)
    fitted = time.perf_counter()
    probabilities = learner.predict_proba(query)  # (n_query, n_way)
    _finish(items.device)
    end = time.perf_counter()
    predictions = probabilities.argmax(dim=1).cpu()
    accuracy = (predictions == episode.query_labels).float().mean().item()
    return EpisodeOutcome(accuracy=accuracy, seconds=end - start, fit_seconds=fitted - start, predictions=predictions)


class _Stopped(Exception):
    """Raised from a learner's progress callback when the run is cancelled mid-episode."""


def _stop_when(cancel: threading.Event, progress: Callable[[float, str], None] | None) -> Callable[[float, str], None]:
    """A progress callback that stops the learner's training once ``cancel`` is set."""

    def report(fraction: float, message: str) -> None:
        if cancel.is_set():
            raise _Stopped
        if progress is not None:
            progress(fraction, message)

    return report


class EpisodeRun:
    """One method over a list of episodes; iterating runs them, one episode per step.

    Every episode gets a fresh learner: ``make_learner(method, context, **options)`` from the method
    registry, or ``method()`` when it is a callable (training validates the learner built from its
    current meta-parameters). ``cancel`` is checked before each episode, and after each training
    step of a learner that reports its steps (``progress``, as the fine-tuning learners do): once it
    is set the run stops there, the episode in progress is dropped, and ``cancelled`` is True. An
    error of a learner propagates to the caller.

    Args:
        method: a registered method key, or a callable returning a fresh learner.
        items: (n_items, ...) pool of inputs the method consumes (features, pixels, token ids).
        episodes: the episodes, with indices into ``items``.
        context: where the learners run (backbone or encoder id, feature size, device), for a key.
        options: the method's options (checked against its bounds), for a key.
        name: the method name in the summary (default: the key, or the learner's ``name``).
        cancel: stop before the next episode once this is set (from any thread).
        measure_memory: record ``peak_mb`` over the episodes (see ``evaluation.PeakMemory``).

    Attributes:
        outcomes: one ``EpisodeOutcome`` per episode run so far, in episode order.
        cancelled: the run stopped early because ``cancel`` was set.
        peak_mb: the peak memory the episodes needed, once the run is over (None if not measured).
    """

    def __init__(
        self,
        method: str | Callable[[], FewShotLearner],
        items: Tensor,
        episodes: Sequence[Episode],
        *,
        context: LearnerContext | None = None,
        options: Mapping[str, Any] | None = None,
        name: str | None = None,
        cancel: threading.Event | None = None,
        measure_memory: bool = False,
    ) -> None:
        if isinstance(method, str):
            self.make_learner: Callable[[], FewShotLearner] = functools.partial(
                make_learner, method, context, **(options or {})
            )
            self.method = name or method
        else:
            self.make_learner = method
            self.method = name or "learner"
        self.items = items
        self.episodes = list(episodes)
        self.cancel = cancel
        self.measure_memory = measure_memory
        self.outcomes: list[EpisodeOutcome] = []
        self.cancelled = False
        self.peak_mb: float | None = None
        self._started = False

    def __iter__(self) -> Iterator[EpisodeOutcome]:
        if self._started:
            raise RuntimeError("an EpisodeRun runs its episodes once; make a new one to run them again")
        self._started = True
        memory = PeakMemory(self.items.device) if self.measure_memory else None
        small = self.items.device.type == "cpu" and self.items.ndim == 2
        with memory if memory is not None else contextlib.nullcontext():
            for episode in self.episodes:
                if self.cancel is not None and self.cancel.is_set():
                    self.cancelled = True
                    break
                # Set per episode, not around the loop: a caller may resume this iterator on another
                # thread (the app's comparison), and the thread setting is per thread.
                PRIORITY.give_way()  # in the app, a prediction running meanwhile goes first
                learner = self.make_learner()
                if self.cancel is not None and hasattr(learner, "progress"):
                    learner.progress = _stop_when(self.cancel, learner.progress)
                try:
                    with one_thread(small):
                        outcome = run_episode(learner, self.items, episode)
                except _Stopped:
                    self.cancelled = True
                    break
                self.outcomes.append(outcome)
                yield outcome
        if memory is not None:
            self.peak_mb = memory.peak_mb

    @property
    def n_shot(self) -> int:
        """Support items per class, read from the episodes."""
        first = self.episodes[0]
        return len(first.support_labels) // len(first.class_ids)

    @property
    def accuracies(self) -> list[float]:
        return [outcome.accuracy for outcome in self.outcomes]

    def summary(self) -> EvaluationSummary:
        """Accuracy with its 95% CI, ms per episode and peak MB over the episodes run.

        Raises:
            ValueError: when no episode ran.
        """
        accuracy, ci95 = mean_and_ci95(self.accuracies)
        return EvaluationSummary(
            method=self.method,
            n_shot=self.n_shot,
            episodes=len(self.outcomes),
            accuracy=accuracy,
            ci95=ci95,
            ms_per_episode=1000 * sum(outcome.seconds for outcome in self.outcomes) / len(self.outcomes),
            peak_mb=self.peak_mb,
        )


def run_episodes(
    method: str | Callable[[], FewShotLearner],
    items: Tensor,
    episodes: Sequence[Episode],
    *,
    context: LearnerContext | None = None,
    options: Mapping[str, Any] | None = None,
    name: str | None = None,
    cancel: threading.Event | None = None,
    on_episode: Callable[[EpisodeOutcome], None] | None = None,
    measure_memory: bool = False,
) -> EpisodeRun:
    """Run every episode (until ``cancel`` is set) and return the finished ``EpisodeRun``.

    Arguments as for ``EpisodeRun``; ``on_episode`` is called after each episode, e.g. to advance a
    progress bar.
    """
    run = EpisodeRun(method, items, episodes, context=context, options=options, name=name, cancel=cancel,
                     measure_memory=measure_memory)
    for outcome in run:
        if on_episode is not None:
            on_episode(outcome)
    return run
