"""Whether the Hugging Face Hub can be reached, asked before a download so that offline users get an
answer in milliseconds instead of waiting through the hub client's retries."""

from __future__ import annotations

import os
import socket

from huggingface_hub import try_to_load_from_cache


def hub_unreachable_reason(host: str = "huggingface.co", timeout: float = 3.0) -> str | None:
    """Return why the Hugging Face Hub cannot be reached, or None when it can."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as error:
        return f"{host} is unreachable: {error.strerror or error}"
    return None


def in_hub_cache(repo_id: str, filename: str = "config.json") -> bool:
    """True when the hub client's local cache already holds ``filename`` of ``repo_id``."""
    return isinstance(try_to_load_from_cache(repo_id, filename), str)
