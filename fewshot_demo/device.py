"""Pick the compute device once and pass it down.

Order of precedence: an explicit argument (e.g. a ``--device`` flag), then the ``FEWSHOT_DEVICE``
environment variable, then CUDA when present, else CPU.
"""

from __future__ import annotations

import os

import torch

DEVICE_ENV_VAR = "FEWSHOT_DEVICE"


def pick_device(requested: str | None = None) -> torch.device:
    """Return the device to run on.

    Args:
        requested: "cpu", "cuda", "cuda:1", "auto" or None. None and "auto" defer to the
            ``FEWSHOT_DEVICE`` environment variable, then to CUDA when available, else CPU.

    Raises:
        ValueError: if the requested device does not exist on this machine.
    """
    choice = (requested or os.environ.get(DEVICE_ENV_VAR) or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as error:
        raise ValueError(f"unknown device {choice!r}; use 'cpu', 'cuda' or 'auto'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {choice!r} was requested but no CUDA GPU is available; use 'cpu' or 'auto'"
        )
    return device
