"""Transfer vs meta-learning vs self-supervised pretraining on identical episodes: the core of the
comparison tab (no UI here).

    data = ComparisonData.from_builtin("tuxpaint")
    for update in run_comparison(data, ComparisonConfig(methods=("linear", "protonet"), n_shots=(1, 5))):
        print(update.message)            # partial results stream in as each method finishes
    print(reading(update.summaries(), update.results))

Every method sees exactly the same episodes (sampled once per shot from one seed), every item is
embedded once per encoder and reused by all methods and shots, and the run can be cancelled between
episodes. The episodes run in ``fewshot_demo.core.runner`` (its docstring says what is timed). Each result
keeps its per-episode accuracies (for paired comparisons), a confusion matrix over the pool's classes
and the query items it got wrong.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import platform
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from fewshot_demo.config.errors import MethodNotApplicableError, UserInputError
from fewshot_demo.config.version import __version__
from fewshot_demo.core.evaluation import EvaluationSummary, paired_difference
from fewshot_demo.core.runner import EpisodeRun
from fewshot_demo.data.builtin import builtin_pool, get_dataset, load_dataset
from fewshot_demo.data.episodes import (
    Episode,
    EpisodeConfig,
    choose_n_query,
    sample_episodes,
)
from fewshot_demo.data.pools import (
    CachedInputs,
    Cancelled,
    EmbeddedPool,
    LoadedData,
    embed_pool,
)
from fewshot_demo.methods import (
    LearnerContext,
    available_methods,
    get_method,
    methods_for,
)
from fewshot_demo.runtime.device import pick_device

DEFAULT_METHODS = ("linear", "baselinepp", "protonet", "maml")
MAX_EPISODES = 2000


#: The families the comparison puts side by side, in the order the report and the tab list them.
COMPARED_FAMILIES = ("transfer", "meta", "self-supervised")


def compared_methods() -> tuple[str, ...]:
    """The methods the comparison puts side by side by default: every inductive transfer, meta and
    self-supervised method of the registry, in that order of families."""
    specs = methods_for(families=COMPARED_FAMILIES, transductive=False)
    return tuple(s.key for s in sorted(specs, key=lambda s: COMPARED_FAMILIES.index(s.family)))


def method_label(method: str) -> str:
    """The display name of a method (its registry label)."""
    return get_method(method).label


def method_family(method: str, encoder_id: str | None = None) -> str:
    """"transfer", "meta", "self-supervised" or "baseline"; on an encoder, ProtoNet without a
    checkpoint is transfer (prototypes on the frozen pretrained features, i.e. SimpleShot)."""
    spec = get_method(method)
    return spec.family_for(encoder_id) if encoder_id is not None else spec.family


@dataclass(frozen=True)
class ComparisonConfig:
    """What to compare.

    Attributes:
        n_way: classes per episode.
        n_shots: support items per class; one set of episodes per value.
        n_query: query items per class, or None to choose: up to 15, as many as keep every class
            in play (at least 5), else as many as keep n_way classes.
        n_episodes: episodes per shot (the same ones for every method).
        methods: registered method names.
        seed: seed of the episode sampler.
        measure_memory: record the peak memory of each method (see ``PeakMemory``).
    """

    n_way: int = 5
    n_shots: tuple[int, ...] = (5,)
    n_query: int | None = None
    n_episodes: int = 100
    methods: tuple[str, ...] = DEFAULT_METHODS
    seed: int = 0
    measure_memory: bool = True

    def __post_init__(self) -> None:
        if self.n_way < 2:
            raise UserInputError(f"n_way must be at least 2, got {self.n_way}")
        if not self.n_shots or min(self.n_shots) < 1:
            raise UserInputError("choose at least one K-shot value, each at least 1")
        if not 1 <= self.n_episodes <= MAX_EPISODES:
            raise UserInputError(f"the number of episodes must be between 1 and {MAX_EPISODES}, got {self.n_episodes}")
        if self.n_query is not None and self.n_query < 1:
            raise UserInputError(f"n_query must be at least 1, got {self.n_query}")
        if not self.methods:
            raise UserInputError("choose at least one method to compare")
        unknown = [m for m in self.methods if m not in available_methods()]
        if unknown:
            raise UserInputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(available_methods())}")


# ------------------------------------------------------------------------------------------- data
@dataclass
class ComparisonData:
    """One data set, as items and labels, with its pools embedded lazily (once per encoder).

    Attributes:
        name: what the data set is called in results.
        data: the items and labels.
        encoder: encoder id for transfer methods (and the others unless ``meta_encoder`` is set).
        meta_encoder: encoder id for the methods trained on the project's base classes (meta-learned,
            self-supervised, and their no-training controls), or None.
        pool_for: encoder id -> embedded pool (cached by the caller or here).
    """

    name: str
    data: LoadedData
    encoder: str
    meta_encoder: str | None = None
    device: torch.device = field(default_factory=lambda: pick_device(None))
    pool_for: Callable[[str], EmbeddedPool] | None = None
    _pools: dict[str, EmbeddedPool] = field(default_factory=dict, repr=False)

    @classmethod
    def from_builtin(cls, dataset_id: str, device: torch.device | None = None) -> "ComparisonData":
        """A built-in data set; its pools are cached across runs (see ``builtin_pool``)."""
        spec = get_dataset(dataset_id)
        device = device or pick_device(None)
        return cls(spec.id, load_dataset(dataset_id), spec.encoder, spec.meta_encoder, device,
                   lambda encoder: builtin_pool(dataset_id, encoder, device))

    @classmethod
    def from_data(cls, name: str, data: LoadedData, device: torch.device | None = None,
                  image_backbone: str = "efficientnet_lite0", text_encoder: str = "minilm") -> "ComparisonData":
        """User data (an upload, or the image/text tab's classes)."""
        encoder = image_backbone if data.modality == "image" else text_encoder
        return cls(name, data, encoder, None, device or pick_device(None))

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    @property
    def labels(self) -> list[int]:
        names = {name: i for i, name in enumerate(self.class_names)}
        return [names[label] for label in self.data.labels]

    def encoder_for(self, method: str) -> str:
        """The meta encoder for meta-learned and self-supervised methods and the controls, when the
        data has one (``pixels28``: their Conv-4 networks read raw pixels)."""
        uses_meta = get_method(method).family in ("meta", "self-supervised", "baseline")
        return self.meta_encoder if self.meta_encoder and uses_meta else self.encoder

    def has_pool(self, encoder_id: str) -> bool:
        """True once the items are embedded with ``encoder_id`` for this data."""
        return encoder_id in self._pools

    def pool(self, encoder_id: str, cancel: threading.Event | None = None) -> EmbeddedPool:
        """The items embedded with ``encoder_id`` (once); raises ``Cancelled`` once ``cancel`` is set
        while user data is being embedded."""
        if encoder_id not in self._pools:
            self._pools[encoder_id] = (
                self.pool_for(encoder_id) if self.pool_for else embed_pool(self.data, encoder_id, self.device,
                                                                           cancel=cancel)
            )
        return self._pools[encoder_id]

    def release_inputs(self) -> None:
        """Keep only the features of this data's own pools, so that what a browser session keeps
        between runs stays small (the built-in data sets' pools are shared, see ``builtin_pool``)."""
        if self.pool_for is None:
            for pool in self._pools.values():
                if isinstance(pool.prepare, CachedInputs):
                    pool.prepare.release()


# ---------------------------------------------------------------------------------------- results
def episodes_fingerprint(episodes: Sequence[Episode]) -> str:
    """A short hash of the episodes' indices and labels: equal fingerprints, identical episodes."""
    digest = hashlib.sha1()
    for episode in episodes:
        for tensor in (episode.support_indices, episode.support_labels, episode.query_indices, episode.query_labels):
            digest.update(tensor.numpy().tobytes())
        digest.update(repr(episode.class_ids).encode())
    return digest.hexdigest()[:12]


@dataclass
class MethodResult:
    """One method at one K-shot on the shared episodes.

    Attributes:
        summary: accuracy, 95% CI, ms per episode, peak MB.
        encoder_id: the backbone or encoder the method ran on.
        n_query: queries per class in each episode.
        episode_accuracies: (n_episodes,) accuracy on each episode, in episode order.
        confusion: (n_classes, n_classes) query counts over all episodes; rows: true pool class,
            columns: predicted pool class.
        mistakes: {(pool index, predicted pool class): times}, over all episodes.
        episodes_id: ``episodes_fingerprint`` of the episodes it ran on.
    """

    summary: EvaluationSummary
    encoder_id: str
    n_query: int
    episode_accuracies: list[float]
    confusion: np.ndarray
    mistakes: Counter
    episodes_id: str

    @property
    def method(self) -> str:
        return self.summary.method

    @property
    def n_shot(self) -> int:
        return self.summary.n_shot

    @property
    def family(self) -> str:
        return method_family(self.method, self.encoder_id)

    def per_class_accuracy(self) -> list[float | None]:
        """Accuracy on the queries of each pool class (None for a class never queried)."""
        totals = self.confusion.sum(axis=1)
        return [float(self.confusion[c, c] / totals[c]) if totals[c] else None for c in range(len(totals))]

    def misclassified(self, limit: int = 24) -> list[tuple[int, int, int]]:
        """The most often misclassified query items: [(pool index, predicted pool class, times)]."""
        return [(index, predicted, times) for (index, predicted), times in self.mistakes.most_common(limit)]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary.to_dict(),
            "family": self.family,
            "encoder": self.encoder_id,
            "n_query": self.n_query,
            "episodes_id": self.episodes_id,
        }


@dataclass(frozen=True)
class NotRun:
    """A method without a result at one K-shot, and why.

    Attributes:
        method: the method key.
        n_shot: the K-shot it was to run at.
        error: the type of the error that stopped it: a ``MethodNotApplicableError`` (e.g.
            ``CheckpointMissingError``) when the method does not apply to this data or encoder (it is
            skipped), any other ``ValueError`` or ``RuntimeError`` when it failed during its episodes.
        reason: the error's message.
    """

    method: str
    n_shot: int
    error: type[Exception]
    reason: str

    @property
    def failed(self) -> bool:
        """True when the method failed while running, False when it was skipped as not applicable."""
        return not issubclass(self.error, MethodNotApplicableError)

    def __str__(self) -> str:
        return f"{self.method}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "n_shot": self.n_shot, "error": self.error.__name__, "reason": self.reason,
                "failed": self.failed}


@dataclass
class ComparisonUpdate:
    """One step of a running comparison, as yielded by ``run_comparison``.

    Attributes:
        kind: "status" (about to embed or start), "progress" (episodes ran), "result" (a method
            finished: its result is last in ``results``), "skipped" (a method does not apply here:
            its reason is last in ``skipped``), "failed" (a method raised an error during its
            episodes: last in ``failed``; the others still run), "done" or "cancelled" (the last update).
        message: one line for the user.
        done, total: episodes run so far, and in all, over every method and shot.
        results: every finished result so far, in the order they finished.
        skipped: "method: reason" for methods that do not apply to this data or encoder.
        notes: what the reader should know about the data and the episodes.
        failed: "method: reason" for methods that failed during their episodes.
        not_run: every skipped or failed method with its K-shot and error type, in order.
    """

    kind: str
    message: str
    done: int
    total: int
    results: list[MethodResult]
    skipped: list[str]
    notes: list[str]
    failed: list[str] = field(default_factory=list)
    not_run: list[NotRun] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.kind in ("done", "cancelled")

    def summaries(self) -> list[EvaluationSummary]:
        return [r.summary for r in self.results]


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
    labels = data.labels
    n_query = config.n_query or choose_n_query(labels, config.n_way, max(config.n_shots))
    episode_sets = {
        n_shot: sample_episodes(labels, EpisodeConfig(config.n_way, n_shot, n_query), config.n_episodes, seed=config.seed)
        for n_shot in config.n_shots
    }
    notes = list(data.data.notes)
    used = {c for episodes in episode_sets.values() for e in episodes for c in e.class_ids}
    left_out = [data.class_names[c] for c in range(len(data.class_names)) if c not in used]
    if left_out:
        notes.append(f"classes with too few items for {max(config.n_shots)}-shot + {n_query} queries were left out: "
                     + ", ".join(left_out))
    notes.append(f"{config.n_way}-way, {n_query} queries per class, {config.n_episodes} episodes per K-shot, seed {config.seed}")
    total = len(config.methods) * len(config.n_shots) * config.n_episodes
    results: list[MethodResult] = []
    not_run: list[NotRun] = []
    done = 0

    def update(kind: str, message: str) -> ComparisonUpdate:
        skipped = [str(n) for n in not_run if not n.failed]
        failed = [str(n) for n in not_run if n.failed]
        return ComparisonUpdate(kind, message, done, total, list(results), skipped, list(notes), failed, list(not_run))

    n_classes = len(data.class_names)
    prepared: set[tuple[str, str]] = set()
    for n_shot in config.n_shots:
        episodes = episode_sets[n_shot]
        fingerprint = episodes_fingerprint(episodes)
        for method in config.methods:
            shown = _name(method)  # status lines name methods as the tables do
            if cancel is not None and cancel.is_set():
                yield update("cancelled", f"Stopped before {shown} {n_shot}-shot; {len(results)} result(s) kept.")
                return
            encoder_id = data.encoder_for(method)
            spec = get_method(method)
            kind = spec.input_kind(data.data.modality)
            try:
                spec.check_applicable(data.data.modality, encoder_id)
                if not data.has_pool(encoder_id):
                    yield update("status", f"Embedding {len(labels)} items with {encoder_id} (once per encoder and data set)...")
                pool = data.pool(encoder_id, cancel=cancel)
                context = LearnerContext(encoder_id, pool.feature_dim, data.device)
                if kind != "features" and (encoder_id, kind) not in prepared:
                    yield update("status", f"Preparing {kind} inputs for {shown} (once)...")
                # Features are embedded with the pool; other kinds are computed now, hearing a Stop.
                items = pool.prepare(kind) if kind == "features" else pool.prepare(kind, cancel=cancel)
                prepared.add((encoder_id, kind))
            except Cancelled:
                yield update("cancelled", f"Stopped while preparing {shown} {n_shot}-shot; {len(results)} result(s) kept.")
                return
            except MethodNotApplicableError as error:
                not_run.append(NotRun(method, n_shot, type(error), str(error)))
                done += len(episodes)
                yield update("skipped", f"{shown} skipped: {error}")
                continue
            confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
            mistakes: Counter = Counter()
            run = EpisodeRun(method, items, episodes, context=context, cancel=cancel,
                             measure_memory=config.measure_memory)
            problem = None
            try:
                for number, outcome in enumerate(run, start=1):
                    _count(confusion, mistakes, episodes[number - 1], outcome.predictions)
                    done += 1
                    if number % progress_every == 0 and number < len(episodes):
                        yield update("progress", f"{shown} {n_shot}-shot: episode {number}/{len(episodes)}")
            except (ValueError, RuntimeError) as error:  # MethodNotApplicableError is a ValueError: skipped
                problem = NotRun(method, n_shot, type(error), str(error))
            if run.cancelled:
                yield update("cancelled", f"Stopped during {shown} {n_shot}-shot after {len(run.outcomes)} of "
                             f"{len(episodes)} episodes; that partial run is not shown. {len(results)} result(s) kept.")
                return
            if problem is not None:
                not_run.append(problem)
                done += len(episodes) - len(run.outcomes)
                if problem.failed:
                    yield update("failed", f"{shown} {n_shot}-shot failed at episode {len(run.outcomes) + 1} of "
                                 f"{len(episodes)} ({problem.error.__name__}: {problem.reason}); the other methods still run.")
                else:
                    yield update("skipped", f"{shown} skipped: {problem.reason}")
                continue
            summary = run.summary()
            results.append(MethodResult(summary, encoder_id, n_query, run.accuracies, confusion, mistakes, fingerprint))
            yield update("result", f"{shown} {n_shot}-shot: {summary.accuracy:.1%} ± {summary.ci95:.1%} "
                         f"({summary.ms_per_episode:.1f} ms/episode)")
    skipped, failed = sum(not n.failed for n in not_run), sum(n.failed for n in not_run)
    yield update("done", f"Done: {len(results)} result(s)" + (f", {skipped} method(s) skipped" if skipped else "")
                 + (f", {failed} failed" if failed else "") + ".")


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


# ---------------------------------------------------------------------------------------- reading
def _name(method: str) -> str:
    return method_label(method)


def reading(summaries: Sequence[EvaluationSummary], results: Sequence[MethodResult] | None = None) -> str:
    """A plain-language verdict from the numbers, per K-shot: which method wins, by how much, and
    whether the gap is larger than the confidence intervals.

    Args:
        summaries: one per method and K-shot (on the same episodes for a given K-shot).
        results: the matching results with per-episode accuracies, for a paired test of the gap
            (more sensitive than comparing intervals, because every method saw the same episodes).

    Returns:
        Markdown: one paragraph per K-shot, the transfer-vs-meta verdict, what the self-supervised
        results say (against the same network with random weights and the meta-trained one), and the
        known findings.
    """
    if not summaries:
        return "No results yet."
    per_episode = {(r.method, r.n_shot): r.episode_accuracies for r in (results or [])}
    families = {r.method: r.family for r in (results or [])}
    family = lambda method: families.get(method) or method_family(method)  # noqa: E731
    paragraphs = []
    verdicts = []
    pretraining = []
    for n_shot in sorted({s.n_shot for s in summaries}):
        ranked = sorted((s for s in summaries if s.n_shot == n_shot), key=lambda s: -s.accuracy)
        best = ranked[0]
        if len(ranked) == 1:
            paragraphs.append(f"**{n_shot}-shot:** only {_name(best.method)} ran: {best.accuracy:.1%} ± {best.ci95:.1%}.")
            continue
        second = ranked[1]
        gap = best.accuracy - second.accuracy
        overlap = best.accuracy - best.ci95 <= second.accuracy + second.ci95
        text = (f"**{n_shot}-shot:** {_name(best.method)} wins with {best.accuracy:.1%} ± {best.ci95:.1%}, "
                f"{100 * gap:.1f} points ahead of {_name(second.method)} ({second.accuracy:.1%} ± {second.ci95:.1%}). ")
        if overlap:
            text += "Their 95% intervals overlap, so the gap is not larger than the intervals"
        else:
            text += "Their 95% intervals do not overlap: the gap is larger than the intervals"
        pair = (best.method, n_shot), (second.method, n_shot)
        if pair[0] in per_episode and pair[1] in per_episode and len(per_episode[pair[0]]) == len(per_episode[pair[1]]):
            mean, ci = paired_difference(per_episode[pair[0]], per_episode[pair[1]])
            significant = mean - ci > 0
            text += (f"; on the same episodes the paired difference is {100 * mean:+.1f} ± {100 * ci:.1f} points, "
                     + ("so it is a real difference on this data." if significant else "which includes zero: call it a tie."))
        else:
            text += "."
        slowest, fastest = max(ranked, key=lambda s: s.ms_per_episode), min(ranked, key=lambda s: s.ms_per_episode)
        if fastest.ms_per_episode > 0 and slowest.ms_per_episode / fastest.ms_per_episode >= 10:
            text += (f" Cost: {_name(slowest.method)} needs {slowest.ms_per_episode:.0f} ms per episode, "
                     f"{_name(fastest.method)} {fastest.ms_per_episode:.1f} ms.")
        paragraphs.append(text)
        transfer = [s for s in ranked if family(s.method) == "transfer"]
        meta = [s for s in ranked if family(s.method) == "meta"]
        if transfer and meta:
            t, m = transfer[0], meta[0]
            separated = abs(t.accuracy - m.accuracy) > t.ci95 + m.ci95
            winner = "transfer" if t.accuracy >= m.accuracy else "meta"
            verdicts.append((n_shot, winner, separated, t, m))
        self_supervised = [s for s in ranked if family(s.method) == "self-supervised"]
        if self_supervised:
            pretraining.append(_pretraining_sentence(n_shot, self_supervised[0], ranked, family, per_episode))
    if verdicts:
        parts = []
        for n_shot, winner, separated, t, m in verdicts:
            lead, other = (t, m) if winner == "transfer" else (m, t)
            parts.append(f"{n_shot}-shot: best {winner} method {_name(lead.method)} {lead.accuracy:.1%} vs "
                         f"{_name(other.method)} {other.accuracy:.1%} ({'clear' if separated else 'within the intervals'})")
        transfer_wins = all(v[1] == "transfer" or not v[2] for v in verdicts)
        answer = ("**Should you meta-learn or just transfer here?** "
                  + ("Just transfer: " if transfer_wins else "Meta-learning pays off here: ") + "; ".join(parts) + ".")
        paragraphs.append(answer)
    if pretraining:
        paragraphs.append(
            "**What did pretraining without labels buy?** The self-supervised methods pretrained the same Conv-4 the "
            "meta-learners use on the same base images, without their labels, and read it with a linear head fitted on "
            "the support; set against the random Conv-4 they show "
            "what the unlabelled images alone teach, and against the meta-trained one what the base classes' labels "
            "add. " + " ".join(pretraining)
        )
    paragraphs.append(
        "*Families:* transfer methods adapt an ImageNet-pretrained backbone on the support set; meta-learners were "
        "trained on labelled episodes of base classes; self-supervised methods were pretrained on base images "
        "without labels; baselines are the same networks with random weights.")
    paragraphs.append(
        "*Context:* with a strong pretrained backbone, a linear probe (or a cosine classifier) on frozen features "
        "is hard to beat (Chen et al. 2019, \"A Closer Look at Few-shot Classification\"; Tian et al. 2020, "
        "\"Rethinking Few-Shot Image Classification\"). Meta-learning tends to matter when no good pretrained "
        "representation exists, e.g. small networks trained from scratch on 28x28 pixels. Intervals are "
        "1.96 x std / sqrt(episodes) over episodes; when episodes reuse the same few items they understate "
        "the real uncertainty."
    )
    return "\n\n".join(paragraphs)


def _pretraining_sentence(
    n_shot: int, best: EvaluationSummary, ranked: Sequence[EvaluationSummary], family: Callable[[str], str],
    per_episode: dict[tuple[str, int], list[float]],
) -> str:
    """One sentence per K-shot: the best self-supervised method against the random network and the
    best meta-learned one (paired on the same episodes where both ran)."""
    parts = []
    for other_family, name in (("baseline", "the random Conv-4"), ("meta", "the best meta-learned method")):
        others = [s for s in ranked if family(s.method) == other_family]
        # The random Conv-4 read the way the self-supervised methods read theirs, where it ran.
        others.sort(key=lambda s: _controls(s.method) != "self-supervised")
        if not others:
            continue
        other = others[0]
        pair = (best.method, n_shot), (other.method, n_shot)
        if pair[0] in per_episode and pair[1] in per_episode and len(per_episode[pair[0]]) == len(per_episode[pair[1]]):
            mean, ci = paired_difference(per_episode[pair[0]], per_episode[pair[1]])
            verdict = "ahead" if mean - ci > 0 else "behind" if mean + ci < 0 else "tied"
            parts.append(f"{100 * mean:+.1f} ± {100 * ci:.1f} points against {name} ({_name(other.method)}, "
                         f"{other.accuracy:.1%}; paired: {verdict})")
        else:
            parts.append(f"{100 * (best.accuracy - other.accuracy):+.1f} points against {name} "
                         f"({_name(other.method)}, {other.accuracy:.1%})")
    if not parts:
        return f"{n_shot}-shot: {_name(best.method)} {best.accuracy:.1%} ± {best.ci95:.1%}."
    return f"{n_shot}-shot: {_name(best.method)} {best.accuracy:.1%}, " + "; ".join(parts) + "."


def _controls(method: str) -> str | None:
    """The family of the method a baseline controls (None for other methods)."""
    controlled = get_method(method).baseline_of
    return get_method(controlled).family if controlled else None


# ----------------------------------------------------------------------------------------- export
CSV_COLUMNS = ("dataset", "method", "family", "encoder", "n_way", "n_shot", "n_query", "episodes",
               "accuracy", "ci95", "ms_per_episode", "peak_mb")


def results_csv(dataset: str, n_way: int, results: Sequence[MethodResult]) -> str:
    """The results as CSV text, one row per method and K-shot."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow({"dataset": dataset, "n_way": n_way, **result.to_dict(), "peak_mb": (
            "" if result.summary.peak_mb is None else round(result.summary.peak_mb, 2))})
    return buffer.getvalue()


def results_json(data: ComparisonData, config: ComparisonConfig, update: ComparisonUpdate) -> dict[str, Any]:
    """The results as a JSON-able dict, in the bench command's shape plus the comparison's fields."""
    per_class = {
        f"{r.method}/{r.n_shot}": dict(zip(data.class_names, [None if a is None else round(a, 4) for a in r.per_class_accuracy()]))
        for r in update.results
    }
    return {
        "dataset": data.name,
        "modality": data.data.modality,
        "encoder": data.encoder,
        **({"meta_encoder": data.meta_encoder} if data.meta_encoder else {}),
        "device": str(data.device),
        "n_way": config.n_way,
        "n_shots": list(config.n_shots),
        "n_query": update.results[0].n_query if update.results else config.n_query,
        "episodes": config.n_episodes,
        "seed": config.seed,
        "items": len(data.data.items),
        "classes": data.class_names,
        "status": update.kind,
        "notes": update.notes,
        "skipped": update.skipped,
        "failed": update.failed,
        "not_run": [n.to_dict() for n in update.not_run],
        "versions": versions(),
        "results": [r.to_dict() for r in update.results],
        "per_class_accuracy": per_class,
        "reading": reading(update.summaries(), update.results),
    }


def versions() -> dict[str, str]:
    """Versions that the numbers depend on."""
    found = {"fewshot_demo": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for package in ("timm", "transformers"):
        try:
            found[package] = __import__(package).__version__
        except ImportError:
            pass
    return found


def write_exports(folder: Any, data: ComparisonData, config: ComparisonConfig, update: ComparisonUpdate) -> tuple[str, str]:
    """Write ``comparison.csv`` and ``comparison.json`` into ``folder``; return their paths."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / "comparison.csv", folder / "comparison.json"
    csv_path.write_text(results_csv(data.name, config.n_way, update.results))
    json_path.write_text(json.dumps(results_json(data, config, update), indent=2) + "\n")
    return str(csv_path), str(json_path)
