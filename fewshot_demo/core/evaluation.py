"""What the episodes' numbers are summarised with: accuracy with a 95% confidence interval, paired
differences, peak memory, and the summary of one method at one K-shot.

The episodes themselves run in ``fewshot_demo.core.runner``.
"""

from __future__ import annotations

import math
import resource
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch


def mean_and_ci95(values: list[float]) -> tuple[float, float]:
    """Return (mean, 1.96 * std / sqrt(n)) with the population std, as the few-shot literature does."""
    if not values:
        raise ValueError("no values to summarise")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return mean, 1.96 * std / math.sqrt(n)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width of the per-episode differences a - b (same episodes, paired).

    Raises:
        ValueError: when the two runs do not have the same number of episodes.
    """
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs the same episodes; got {len(a)} and {len(b)}")
    return mean_and_ci95([x - y for x, y in zip(a, b)])


_PROC = Path("/proc/self")


def _resident_mb() -> float | None:
    """The process's current resident set size in MB (Linux), else None."""
    try:
        return int((_PROC / "statm").read_text().split()[1]) * _page_size() / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _page_size() -> int:
    return resource.getpagesize()


def _peak_resident_mb() -> float | None:
    """The process's peak resident set size (VmHWM) in MB (Linux), else None."""
    try:
        for line in (_PROC / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


class PeakMemory:
    """Measure how much memory a block of work needs at its peak, in MB (``peak_mb`` after the block).

    What is measured:
    - on CUDA: ``torch.cuda.max_memory_allocated`` during the block minus the memory allocated at its
      start, i.e. the peak of tensors the work added on the GPU;
    - on the CPU (Linux): the increase of the process's peak resident set size (``VmHWM``) over its
      resident size at the start, after resetting the peak through ``/proc/self/clear_refs``; when the
      reset is not allowed, a thread samples the resident size every 2 ms instead. This counts every
      page the process touched (tensors, Python objects, other threads' work) and memory that the
      allocator already held is reused without being counted, so it is an upper bound of a
      method's own needs when other work runs at the same time and a lower bound after a method that
      needed more.
    ``peak_mb`` stays None where neither is available.

    Args:
        device: where the work runs.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.peak_mb: float | None = None
        self._start = 0.0
        self._sampled: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        start = _resident_mb()
        if start is None:
            return self
        self._start = start
        try:
            (_PROC / "clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            self._sampled = start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            current = _resident_mb()
            if current is not None and self._sampled is not None:
                self._sampled = max(self._sampled, current)

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = max(torch.cuda.max_memory_allocated(self.device) / 2**20 - self._start, 0.0)
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max((self._sampled or self._start) - self._start, 0.0)
            return
        peak = _peak_resident_mb()
        if peak is not None and self._start:
            self.peak_mb = max(peak - self._start, 0.0)


@dataclass
class EvaluationSummary:
    """One method at one K-shot over a set of episodes.

    Attributes:
        method: the method name.
        n_shot: support items per class.
        episodes: how many episodes it ran.
        accuracy: mean query accuracy over the episodes.
        ci95: 1.96 x std / sqrt(episodes) of the per-episode accuracies.
        ms_per_episode: mean ``fit`` + ``predict_proba`` time (see ``runner``).
        peak_mb: peak memory the episodes needed (see ``PeakMemory``), or None when not measured.
    """

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
