"""Pick the compute device once and pass it down.

Order of precedence: an explicit argument (e.g. a ``--device`` flag), then the ``FEWSHOT_DEVICE``
environment variable, then CUDA when present, else CPU.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import DEVICE_ENV_VAR, settings  # noqa: F401  (DEVICE_ENV_VAR re-exported)


def pick_device(requested: str | None = None) -> torch.device:
    """Return the device to run on.

    Args:
        requested: "cpu", "cuda", "cuda:1", "auto" or None. None and "auto" defer to the
            ``FEWSHOT_DEVICE`` environment variable, then to CUDA when available, else CPU.

    Raises:
        UserInputError: if the requested device does not exist on this machine.
    """
    choice = (requested or settings().device or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as error:
        raise UserInputError(f"unknown device {choice!r}; use 'cpu', 'cuda' or 'auto'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            f"device {choice!r} was requested but no CUDA GPU is available; use 'cpu' or 'auto'"
        )
    return device


@contextlib.contextmanager
def one_thread(enabled: bool) -> Iterator[None]:
    """Run tensor code on one intra-op thread (thread-local; restored afterwards).

    Few-shot learners run many small operations (MAML on cached features: dozens of (25, 1280)
    products). Measured on a 2-core CPU that other processes keep busy, MAML's fit takes 8 ms on one
    thread and 2 s on two, because every small call waits for the second core; Conv-4 episodes on
    28x28 images go from 0.7-3 s to 40-200 ms. An idle machine loses little by this: the
    tensors are too small for a second thread to pay off. The same holds for a single image through
    the backbone: 16 ms on one thread (the other core busy), 18 ms on two on an idle 2-core CPU, and
    1-2 s on two while another process keeps one core busy. A server that answers several users at once should spend
    its cores on users, not on splitting one small forward pass.
    """
    if not enabled:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
