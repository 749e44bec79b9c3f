"""What the load commands record: each endpoint's latencies and errors, from many threads, and percentiles."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass
class Record:
    """What one endpoint saw: latencies of the requests that succeeded, and the errors."""

    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.seconds) + len(self.errors)


class Recorder:
    """Latencies and errors per endpoint, from many threads."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = defaultdict(Record)
        self._lock = threading.Lock()

    def call(self, endpoint: str, request: Callable[[], Any]) -> Any:
        """Run ``request``, timing it under ``endpoint``; None when it failed (the error is kept)."""
        started = time.perf_counter()
        try:
            result = request()
        except Exception as error:  # noqa: BLE001 - every failure counts as an error of the endpoint
            with self._lock:
                self.records[endpoint].errors.append(f"{type(error).__name__}: {str(error)[:200]}")
            return None
        with self._lock:
            self.records[endpoint].seconds.append(time.perf_counter() - started)
        return result


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the two nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
