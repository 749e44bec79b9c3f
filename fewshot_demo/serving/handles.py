"""Fitted classifiers kept under handles: random, unguessable tokens (knowing one is what lets a
caller use its classifier), in a store bounded in count, in memory and in idle time; the least
recently used goes first."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from fewshot_demo.api import Classifier
from fewshot_demo.config.errors import UserInputError


@dataclass
class Fitted:
    """One kept classifier.

    Attributes:
        classifier: the fitted classifier (its ``support_items`` name the nearest examples).
        nbytes: the memory its tensors hold, as counted by ``tensor_bytes``.
        last_used: ``clock()`` of its last fit or prediction.
        lock: one prediction at a time per classifier (learners are not all re-entrant).
    """

    classifier: Classifier
    nbytes: int
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class HandleStore:
    """Fitted classifiers under random tokens, bounded in count, memory and idle time.

    Args:
        max_handles: most classifiers kept; a new one pushes out the least recently used.
        max_bytes: most memory kept, counted by ``tensor_bytes``; likewise.
        ttl_s: a classifier unused for this long is forgotten.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, max_handles: int, max_bytes: float, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_handles = max_handles
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: OrderedDict[str, Fitted] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, classifier: Classifier) -> str:
        """Keep a classifier; return its new handle.

        Raises:
            UserInputError: when this one classifier alone is larger than the store's memory.
        """
        nbytes = tensor_bytes(classifier)
        if nbytes > self.max_bytes:
            raise UserInputError(
                f"this classifier holds {nbytes / 2**20:.0f} MB, more than the {self.max_bytes / 2**20:.0f} MB this "
                "server keeps; use fewer support items, or a method that does not train the backbone"
            )
        handle = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            self._entries[handle] = Fitted(classifier, nbytes, self.clock())
            while len(self._entries) > self.max_handles or self.nbytes > self.max_bytes:
                self._entries.popitem(last=False)
        return handle

    def get(self, handle: str) -> Fitted:
        """The classifier kept under ``handle``, marked as used now.

        Raises:
            UserInputError: for an unknown, forgotten or expired handle, saying to fit again.
        """
        with self._lock:
            self._expire()
            handle = str(handle or "").strip()
            entry = self._entries.get(handle)
            if entry is None:
                raise UserInputError(
                    "unknown or expired handle: handles last "
                    f"{self.ttl_s / 60:.0f} minutes after their last use and the server keeps at most "
                    f"{self.max_handles}; fit the support set again (/fit_images or /fit_texts) for a new one"
                )
            entry.last_used = self.clock()
            self._entries.move_to_end(handle)
            return entry

    def drop(self, handle: str) -> bool:
        """Forget a handle; True when it was kept."""
        with self._lock:
            return self._entries.pop(str(handle or "").strip(), None) is not None

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def _expire(self) -> None:
        now = self.clock()
        for handle in [h for h, entry in self._entries.items() if now - entry.last_used > self.ttl_s]:
            del self._entries[handle]


def tensor_bytes(root: Any, depth: int = 4) -> int:
    """Bytes of the distinct tensors reachable from ``root`` through attributes, lists and dicts
    (modules count their parameters and buffers): what keeping ``root`` costs in memory."""
    seen: set[int] = set()
    total = 0

    def visit(value: Any, level: int) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            key = value.untyped_storage().data_ptr() if value.numel() else id(value)
            if key not in seen:
                seen.add(key)
                total += value.untyped_storage().nbytes()
        elif isinstance(value, nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                visit(tensor.detach(), level)
        elif level > 0 and isinstance(value, (list, tuple)):
            for item in value:
                visit(item, level - 1)
        elif level > 0 and isinstance(value, dict):
            for item in value.values():
                visit(item, level - 1)
        elif level > 0 and hasattr(value, "__dict__") and not isinstance(value, type):
            for item in vars(value).values():
                visit(item, level - 1)

    visit(root, depth)
    return total
