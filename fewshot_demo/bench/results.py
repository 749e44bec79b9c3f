"""What a comparison yields: one result per method and K-shot, the methods that did not run, and
the updates that stream them (``fewshot_demo.bench.compare_run`` makes them).

Each result keeps its per-episode accuracies (for paired comparisons), a confusion matrix over the
pool's classes and the query items it got wrong.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from fewshot_demo.bench.comparison import method_family
from fewshot_demo.config.errors import MethodNotApplicableError
from fewshot_demo.core.evaluation import EvaluationSummary
from fewshot_demo.data.episodes import Episode


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
