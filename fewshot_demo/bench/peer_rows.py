"""The text peers' results: one row per method and shot count, paired against each peer, merged
across runs over consecutive episode ranges (``python -m fewshot_demo.bench.text_peers`` makes them).

    rows = merge_rows([PeerRow.from_summary(s) for run in runs for s in run["results"]])
    print(format_report(report(rows)))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core import evaluation
from fewshot_demo.core.evaluation import mean_and_ci95

PEERS = ("sklearn_lr", "setfit")


@dataclass
class PeerRow:
    """One method at one shot count: per-episode accuracies and training seconds."""

    method: str
    encoder: str
    n_shot: int
    accuracies: list[float] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    first_episode: int = 0  # accuracies[i] is episode first_episode + i of the seed's sequence

    @property
    def end_episode(self) -> int:
        return self.first_episode + len(self.accuracies)

    def summary(self) -> dict:
        accuracy, ci95 = mean_and_ci95(self.accuracies)
        return {
            "method": self.method, "encoder": self.encoder, "n_shot": self.n_shot, "episodes": len(self.accuracies),
            "accuracy": round(accuracy, 4), "ci95": round(ci95, 4),
            "train_s": round(sum(self.train_seconds) / len(self.train_seconds), 4),
            # kept so that runs over different episodes can be merged and paired later (``merge``)
            "first_episode": self.first_episode,
            "per_episode": [round(accuracy, 4) for accuracy in self.accuracies],
            "per_episode_train_s": [round(seconds, 4) for seconds in self.train_seconds],
        }

    @classmethod
    def from_summary(cls, summary: dict) -> "PeerRow":
        """Rebuild a row from its ``summary`` (as written by ``--out``)."""
        accuracies = list(summary["per_episode"])
        seconds = summary.get("per_episode_train_s") or [summary["train_s"]] * len(accuracies)
        return cls(summary["method"], summary["encoder"], summary["n_shot"], accuracies, list(seconds),
                   summary.get("first_episode", 0))


def _overlap(ours: PeerRow, peer: PeerRow) -> tuple[slice, slice, int]:
    """Slices of each row's lists covering the episodes both ran, and how many there are."""
    first, end = max(ours.first_episode, peer.first_episode), min(ours.end_episode, peer.end_episode)
    n = max(0, end - first)
    return (slice(first - ours.first_episode, first - ours.first_episode + n),
            slice(first - peer.first_episode, first - peer.first_episode + n), n)


def paired_difference(ours: PeerRow, peer: PeerRow) -> dict | None:
    """Mean and 95% CI of (ours - peer) accuracy over the episodes both ran; None when they share none."""
    mine, theirs, n = _overlap(ours, peer)
    if n == 0:
        return None
    mean, ci95 = evaluation.paired_difference(ours.accuracies[mine], peer.accuracies[theirs])
    return {"method": ours.method, "peer": peer.method, "n_shot": ours.n_shot, "episodes": n,
            "difference": round(mean, 4), "ci95": round(ci95, 4)}


def merge_rows(rows: Sequence[PeerRow]) -> list[PeerRow]:
    """Join rows of one method and shot count that ran consecutive episode ranges into one row each.

    Raises:
        UserInputError: when two ranges of one method overlap or leave a gap (the merged row would not be
            the episodes it claims to be).
    """
    groups: dict[tuple[str, int], list[PeerRow]] = {}
    for row in rows:
        groups.setdefault((row.method, row.n_shot), []).append(row)
    merged = []
    for (method, n_shot), parts in groups.items():
        parts = sorted(parts, key=lambda row: row.first_episode)
        joined = PeerRow(method, parts[0].encoder, n_shot, first_episode=parts[0].first_episode)
        for part in parts:
            if part.first_episode != joined.end_episode:
                raise UserInputError(
                    f"{method} at {n_shot} shots: episodes {part.first_episode}-{part.end_episode - 1} do not follow "
                    f"episodes {joined.first_episode}-{joined.end_episode - 1}; merge runs of consecutive ranges "
                    "(--slow-from)"
                )
            joined.accuracies += part.accuracies
            joined.train_seconds += part.train_seconds
        merged.append(joined)
    return merged


def summary_line(summary: dict) -> str:
    """One row of the results table: method, shots, episodes, accuracy, CI, training seconds."""
    return (f"{summary['method']:<28}{summary['n_shot']:>6}{summary['episodes']:>10}{summary['accuracy']:>10.4f}"
            f"{summary['ci95']:>9.4f}{summary['train_s']:>11.3f}")


def report(rows: Sequence[PeerRow]) -> dict:
    """Summaries, paired differences of our methods to each peer, and training-time ratios to SetFit."""
    summaries = [row.summary() for row in rows]
    differences, ratios = [], []
    for ours in (row for row in rows if row.method not in PEERS):
        for peer in (row for row in rows if row.method in PEERS and row.n_shot == ours.n_shot):
            difference = paired_difference(ours, peer)
            if difference is None:
                continue
            differences.append(difference)
            if peer.method == "setfit":
                mine, theirs, n = _overlap(ours, peer)
                ratio = sum(ours.train_seconds[mine]) / max(sum(peer.train_seconds[theirs]), 1e-9)
                ratios.append({"method": ours.method, "n_shot": ours.n_shot, "episodes": n,
                               "train_s": round(sum(ours.train_seconds[mine]) / n, 4),
                               "setfit_train_s": round(sum(peer.train_seconds[theirs]) / n, 4),
                               "time_ratio": round(ratio, 4)})
    return {"results": summaries, "paired_differences": differences, "time_vs_setfit": ratios}


def format_report(result: dict) -> str:
    """Plain-text tables of a ``report``."""
    lines = [f"{'method':<28}{'shots':>6}{'episodes':>10}{'accuracy':>10}{'ci95':>9}{'train_s':>11}"]
    lines += [summary_line(summary) for summary in result["results"]]
    lines += ["", f"{'ours - peer':<44}{'shots':>6}{'episodes':>10}{'difference':>12}{'ci95':>9}"]
    lines += [
        f"{d['method'] + ' - ' + d['peer']:<44}{d['n_shot']:>6}{d['episodes']:>10}{d['difference']:>+12.4f}{d['ci95']:>9.4f}"
        for d in result["paired_differences"]
    ]
    if result["time_vs_setfit"]:
        lines += ["", f"{'training time vs setfit':<28}{'shots':>6}{'episodes':>10}{'train_s':>10}{'setfit_s':>10}{'ratio':>8}"]
        lines += [
            f"{r['method']:<28}{r['n_shot']:>6}{r['episodes']:>10}{r['train_s']:>10.3f}{r['setfit_train_s']:>10.3f}"
            f"{r['time_ratio']:>8.3f}"
            for r in result["time_vs_setfit"]
        ]
    return "\n".join(lines)
