"""The temporary files the app's handlers write (saved classifiers, exports, webcam frames), and
their removal: a session's files when it ends, any left behind once older than ``temp_max_age_s``.

Every event's outputs pass through ``tracker().track`` (``ui.events`` does it), so a handler only
has to write under a ``tempfile.mkdtemp(prefix=TEMP_PREFIX + ...)`` folder.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import gradio as gr

from fewshot_demo.config.settings import limits

#: Prefix of the temporary folders the app's handlers create (``tempfile.mkdtemp(prefix="fewshot-...")``).
TEMP_PREFIX = "fewshot-"


class TempFiles:
    """The temporary files each session's handlers wrote, removed when the session ends, and a
    sweep that removes any left behind once older than ``max_age_s``.

    Args:
        root: the temporary folder (default: the system's).
        max_age_s: age at which a leftover ``fewshot-*`` folder is removed.
        clock: seconds since the epoch, as ``time.time`` (tests pass their own).
    """

    def __init__(self, root: str | None = None, max_age_s: float | None = None,
                 clock: Any = time.time) -> None:
        self.root = Path(root or tempfile.gettempdir()).resolve()
        self._prefixes = tuple({str(self.root) + os.sep, os.path.abspath(root or tempfile.gettempdir()) + os.sep})
        self.max_age_s = limits().temp_max_age_s if max_age_s is None else max_age_s
        self._clock = clock
        self._by_session: dict[str, set[Path]] = {}
        self._lock = threading.Lock()

    def folder_of(self, value: Any) -> Path | None:
        """The app's temporary folder that ``value`` (a path) lies in, or None."""
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).startswith(self._prefixes):
            return None  # most outputs are not paths: no file system call for them
        try:
            path = Path(value).resolve()
        except (OSError, ValueError):
            return None
        if path.parent == self.root or not path.is_relative_to(self.root):
            return None
        top = self.root / path.relative_to(self.root).parts[0]
        return top if top.name.startswith(TEMP_PREFIX) else None

    def track(self, session: str | None, outputs: Any) -> None:
        """Remember the app's temporary folders among a handler's outputs, under the session."""
        values = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        folders = {folder for folder in map(self.folder_of, _flatten(values)) if folder is not None}
        if folders:
            with self._lock:
                self._by_session.setdefault(session or "", set()).update(folders)

    def end_session(self, session: str | None) -> int:
        """Remove the session's temporary folders; return how many."""
        with self._lock:
            folders = self._by_session.pop(session or "", set())
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        return len(folders)

    def sweep(self, now: float | None = None) -> int:
        """Remove ``fewshot-*`` folders and files older than ``max_age_s``; return how many."""
        now = self._clock() if now is None else now
        removed = 0
        for entry in self.root.glob(TEMP_PREFIX + "*"):
            try:
                if now - entry.stat().st_mtime <= self.max_age_s:
                    continue
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed += 1
            except OSError:
                continue
        return removed

    def start_sweeping(self, every_s: float) -> threading.Thread:
        """Sweep in a daemon thread every ``every_s`` seconds."""

        def loop() -> None:
            while True:
                time.sleep(every_s)
                self.sweep()

        thread = threading.Thread(target=loop, name="fewshot-temp-sweep", daemon=True)
        thread.start()
        return thread


@functools.cache
def tracker() -> TempFiles:
    """The process's one tracker (the system's temporary folder, ``limits().temp_max_age_s``)."""
    return TempFiles()


def _flatten(values: Iterable[Any]) -> Iterable[Any]:
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _flatten(value)
        elif isinstance(value, dict):
            yield from _flatten(list(value.values()))
        else:
            yield getattr(value, "value", value) if isinstance(value, gr.components.Component) else value
