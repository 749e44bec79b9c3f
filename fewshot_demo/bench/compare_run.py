"""The comparison's run: every method at every K-shot on identical episodes, as a stream of updates.

    for update in run_comparison(data, config, cancel=cancel):    # or stop_within(..., cancel)
        print(update.message)

Every method sees exactly the same episodes (sampled once per shot from one seed), and the run can
be cancelled between episodes. The episodes run in ``fewshot_demo.core.runner`` (its docstring says
what is timed). ``stop_within`` carries a run on a worker thread, so that Stop is answered at once.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from fewshot_demo.bench.comparison import ComparisonConfig, ComparisonData, method_label
from fewshot_demo.bench.pools import Cancelled
from fewshot_demo.bench.results import (
    ComparisonUpdate,
    MethodResult,
    NotRun,
    episodes_fingerprint,
)
from fewshot_demo.config.errors import MethodNotApplicableError
from fewshot_demo.core.runner import EpisodeRun
from fewshot_demo.data.episodes import (
    Episode,
    EpisodeConfig,
    choose_n_query,
    sample_episodes,
)
from fewshot_demo.methods import LearnerContext, get_method


def run_comparison(
    data: ComparisonData,
    config: ComparisonConfig,
    cancel: threading.Event | None = None,
    progress_every: int = 10,
) -> Iterator[ComparisonUpdate]:
    """Run every method at every K-shot on identical episodes, yielding updates as they happen.

    A method that does not apply here (``MethodNotApplicableError``, e.g. no checkpoint for the
    encoder) is skipped with its reason; one that raises another ValueError or RuntimeError during
    its episodes is reported as failed; either way the other methods still run.

    Args:
        data: the data set; pools are embedded on first use.
        config: methods, shots, episodes; see ``ComparisonConfig``.
        cancel: set it (from another thread) to stop: within one episode, one fine-tuning step, or
            one chunk of images being embedded or prepared; the method that was running is dropped
            (its partial run would not be comparable) and the last update says so.
        progress_every: yield a "progress" update every this many episodes.

    Yields:
        ``ComparisonUpdate``s; the last has kind "done" or "cancelled".

    Raises:
        UserInputError: when the data cannot make the requested episodes (before anything runs).
    """
    state = _ComparisonRun.plan(data, config, cancel, progress_every)
    for n_shot in config.n_shots:
        episodes = state.episode_sets[n_shot]
        fingerprint = episodes_fingerprint(episodes)
        for method in config.methods:
            if cancel is not None and cancel.is_set():
                yield state.stop(f"Stopped before {method_label(method)} {n_shot}-shot; "
                                 f"{len(state.results)} result(s) kept.")
                return
            yield from state.run_method(method, n_shot, episodes, fingerprint)
            if state.stopped:
                return
    skipped, failed = sum(not n.failed for n in state.not_run), sum(n.failed for n in state.not_run)
    yield state.update("done", f"Done: {len(state.results)} result(s)"
                       + (f", {skipped} method(s) skipped" if skipped else "") + (f", {failed} failed" if failed else "") + ".")


@dataclass
class _ComparisonRun:
    """A running comparison's episodes and what it has so far, from which each update is made.

    Attributes:
        episode_sets: K-shot -> its episodes (the same for every method).
        n_query: queries per class in each episode.
        notes: what the reader should know about the data and the episodes.
        total: episodes to run, over every method and shot.
        done: episodes run (or skipped) so far.
        prepared: (encoder id, input kind) pairs whose inputs are ready.
        stopped: True once the run answered a Stop (its last update is "cancelled").
    """

    data: ComparisonData
    config: ComparisonConfig
    cancel: threading.Event | None
    progress_every: int
    episode_sets: dict[int, list[Episode]]
    n_query: int
    notes: list[str]
    total: int
    done: int = 0
    results: list[MethodResult] = field(default_factory=list)
    not_run: list[NotRun] = field(default_factory=list)
    prepared: set[tuple[str, str]] = field(default_factory=set)
    stopped: bool = False

    @classmethod
    def plan(cls, data: ComparisonData, config: ComparisonConfig, cancel: threading.Event | None,
             progress_every: int) -> "_ComparisonRun":
        """Sample each K-shot's episodes and note the classes they leave out.

        Raises:
            UserInputError: when the data cannot make the requested episodes.
        """
        labels = data.labels
        n_query = config.n_query or choose_n_query(labels, config.n_way, max(config.n_shots))
        episode_sets = {
            n_shot: sample_episodes(labels, EpisodeConfig(config.n_way, n_shot, n_query), config.n_episodes,
                                    seed=config.seed)
            for n_shot in config.n_shots
        }
        notes = list(data.data.notes)
        used = {c for episodes in episode_sets.values() for e in episodes for c in e.class_ids}
        left_out = [data.class_names[c] for c in range(len(data.class_names)) if c not in used]
        if left_out:
            notes.append(f"classes with too few items for {max(config.n_shots)}-shot + {n_query} queries were left out: "
                         + ", ".join(left_out))
        notes.append(f"{config.n_way}-way, {n_query} queries per class, {config.n_episodes} episodes per K-shot, "
                     f"seed {config.seed}")
        total = len(config.methods) * len(config.n_shots) * config.n_episodes
        return cls(data, config, cancel, progress_every, episode_sets, n_query, notes, total)

    def update(self, kind: str, message: str) -> ComparisonUpdate:
        """The update of this kind, with everything so far."""
        skipped = [str(n) for n in self.not_run if not n.failed]
        failed = [str(n) for n in self.not_run if n.failed]
        return ComparisonUpdate(kind, message, self.done, self.total, list(self.results), skipped, list(self.notes),
                                failed, list(self.not_run))

    def stop(self, message: str) -> ComparisonUpdate:
        """The last update of a stopped run."""
        self.stopped = True
        return self.update("cancelled", message)

    def prepare(self, method: str, n_shot: int, n_episodes: int) -> Iterator[ComparisonUpdate]:
        """Embed the pool and prepare the method's inputs, yielding status updates.

        Returns (as the generator's value):
            (encoder id, inputs, learner context), or None when the method does not apply here
            (it is skipped) or a Stop came (``stopped`` is set).
        """
        shown = method_label(method)  # status lines name methods as the tables do
        encoder_id = self.data.encoder_for(method)
        spec = get_method(method)
        kind = spec.input_kind(self.data.data.modality)
        try:
            spec.check_applicable(self.data.data.modality, encoder_id)
            if not self.data.has_pool(encoder_id):
                yield self.update("status", f"Embedding {len(self.data.data.items)} items with {encoder_id} "
                                  "(once per encoder and data set)...")
            pool = self.data.pool(encoder_id, cancel=self.cancel)
            context = LearnerContext(encoder_id, pool.feature_dim, self.data.device)
            if kind != "features" and (encoder_id, kind) not in self.prepared:
                yield self.update("status", f"Preparing {kind} inputs for {shown} (once)...")
            # Features are embedded with the pool; other kinds are computed now, hearing a Stop.
            items = pool.prepare(kind) if kind == "features" else pool.prepare(kind, cancel=self.cancel)
            self.prepared.add((encoder_id, kind))
        except Cancelled:
            yield self.stop(f"Stopped while preparing {shown} {n_shot}-shot; {len(self.results)} result(s) kept.")
            return None
        except MethodNotApplicableError as error:
            self.not_run.append(NotRun(method, n_shot, type(error), str(error)))
            self.done += n_episodes
            yield self.update("skipped", f"{shown} skipped: {error}")
            return None
        return encoder_id, items, context

    def run_method(self, method: str, n_shot: int, episodes: list[Episode], fingerprint: str) -> Iterator[ComparisonUpdate]:
        """One method at one K-shot: its status and progress, then its result, skip, failure or Stop."""
        prepared = yield from self.prepare(method, n_shot, len(episodes))
        if prepared is None:
            return
        encoder_id, items, context = prepared
        shown = method_label(method)
        n_classes = len(self.data.class_names)
        confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
        mistakes: Counter = Counter()
        run = EpisodeRun(method, items, episodes, context=context, cancel=self.cancel,
                         measure_memory=self.config.measure_memory)
        problem = None
        try:
            for number, outcome in enumerate(run, start=1):
                _count(confusion, mistakes, episodes[number - 1], outcome.predictions)
                self.done += 1
                if number % self.progress_every == 0 and number < len(episodes):
                    yield self.update("progress", f"{shown} {n_shot}-shot: episode {number}/{len(episodes)}")
        except (ValueError, RuntimeError) as error:  # MethodNotApplicableError is a ValueError: skipped
            problem = NotRun(method, n_shot, type(error), str(error))
        if run.cancelled:
            yield self.stop(f"Stopped during {shown} {n_shot}-shot after {len(run.outcomes)} of {len(episodes)} "
                            f"episodes; that partial run is not shown. {len(self.results)} result(s) kept.")
            return
        if problem is not None:
            yield self._not_run(problem, shown, len(episodes) - len(run.outcomes), len(episodes))
            return
        summary = run.summary()
        self.results.append(MethodResult(summary, encoder_id, self.n_query, run.accuracies, confusion, mistakes,
                                         fingerprint))
        yield self.update("result", f"{shown} {n_shot}-shot: {summary.accuracy:.1%} ± {summary.ci95:.1%} "
                          f"({summary.ms_per_episode:.1f} ms/episode)")

    def _not_run(self, problem: NotRun, shown: str, left: int, n_episodes: int) -> ComparisonUpdate:
        """Record a method that raised during its episodes (``left`` of them not run); its update."""
        self.not_run.append(problem)
        self.done += left
        if problem.failed:
            return self.update("failed", f"{shown} {problem.n_shot}-shot failed at episode {n_episodes - left + 1} of "
                               f"{n_episodes} ({problem.error.__name__}: {problem.reason}); the other methods still run.")
        return self.update("skipped", f"{shown} skipped: {problem.reason}")


def stop_within(updates: Iterator[ComparisonUpdate], cancel: threading.Event,
                poll_s: float = 0.1) -> Iterator[ComparisonUpdate]:
    """Pass a running comparison's updates on, and answer Stop within ``poll_s`` wherever it is.

    ``run_comparison`` checks ``cancel`` between episodes, but an episode (text fine-tuning: up to
    half a minute on a CPU) or the embedding of a data set can take longer than a user waits. Here
    the comparison runs on a worker thread; once ``cancel`` is set and no update comes within
    ``poll_s``, the last update comes back as "cancelled" with the results finished so far, and the
    worker stops by itself at its next check (its unfinished episode is dropped, as on any Stop).

    Args:
        updates: ``run_comparison(..., cancel=cancel)``.
        cancel: the same event.
        poll_s: how long to wait for the worker before answering Stop.

    Yields:
        The updates; the last is finished ("done", "cancelled"), or the error the run raised is raised.
    """
    channel: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            for update in updates:
                channel.put((update, None))
        except BaseException as error:  # noqa: BLE001 - raised again on the caller's thread
            channel.put((None, error))
        channel.put((None, None))

    threading.Thread(target=work, name="comparison", daemon=True).start()
    last: ComparisonUpdate | None = None
    while True:
        try:
            update, error = channel.get(timeout=poll_s)
        except queue.Empty:
            if cancel.is_set():
                yield _stopped(last)
                return
            continue
        if error is not None:
            raise error
        if update is None:
            return
        last = update
        yield update
        if update.finished:
            return


def _stopped(last: ComparisonUpdate | None) -> ComparisonUpdate:
    """The update that answers Stop: the last one's results, marked cancelled."""
    if last is None:
        return ComparisonUpdate("cancelled", "Stopped before any method finished; 0 result(s) kept.", 0, 0, [], [], [])
    return dataclasses.replace(
        last, kind="cancelled",
        message=f"Stopped after {last.done} of {last.total} episodes; the method that was running is dropped "
                f"(a partial run would not be comparable). {len(last.results)} result(s) kept.",
    )


def _count(confusion: np.ndarray, mistakes: Counter, episode: Episode, predictions: torch.Tensor) -> None:
    """Add one episode's (n_query,) predictions to the confusion matrix and the mistakes, in pool classes."""
    class_ids = torch.tensor(episode.class_ids)
    true = class_ids[episode.query_labels].numpy()
    predicted = class_ids[predictions].numpy()
    np.add.at(confusion, (true, predicted), 1)
    for index, t, p in zip(episode.query_indices.tolist(), true, predicted):
        if t != p:
            mistakes[(index, int(p))] += 1
