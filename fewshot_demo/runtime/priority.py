"""Quick requests first: long work steps aside between two forward passes while a prediction runs.

A server on a few CPU cores runs several users' requests at once. A classification with a fitted
handle needs one forward pass (tens of milliseconds); a fit needs one per support image and a
comparison embeds a whole data set. Left to the operating system, a query shares the cores with
every fit in progress and waits seconds. Here the long work calls ``give_way()`` before each
forward pass, which waits while any prediction marked ``urgent()`` is running, for at most
``max_wait_s`` at a time so that long work slows down but never stops.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator


class Priority:
    """Predictions marked urgent go before long work that calls ``give_way``.

    Args:
        max_wait_s: the longest one ``give_way`` call waits; then the long work goes on regardless.
    """

    def __init__(self, max_wait_s: float = 0.5) -> None:
        self.max_wait_s = max_wait_s
        self._urgent = 0
        self._changed = threading.Condition()
        self._local = threading.local()

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        """Mark the work inside as urgent: long work waits for it at its next ``give_way``."""
        with self._changed:
            self._urgent += 1
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            with self._changed:
                self._urgent -= 1
                self._changed.notify_all()

    def give_way(self) -> float:
        """Wait while urgent work runs elsewhere (at most ``max_wait_s``); return the seconds waited.

        Returns at once in urgent work itself, so a prediction never waits for another.
        """
        if getattr(self._local, "depth", 0):
            return 0.0
        with self._changed:
            if not self._urgent:
                return 0.0
            started = time.monotonic()
            self._changed.wait_for(lambda: self._urgent == 0, timeout=self.max_wait_s)
            return time.monotonic() - started

    @property
    def urgent_now(self) -> int:
        """How many urgent requests are running."""
        return self._urgent


#: The process-wide priority of the server: ``service.predict`` is urgent, image embedding gives way.
PRIORITY = Priority()
