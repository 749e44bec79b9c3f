"""Option fields with bounds: what a user (or a saved file) may set on a method, and within what limits.

A method's options are a frozen dataclass whose fields use ``bounded``; the registry checks
user-given values against these bounds before a learner is built (``MethodSpec.make_options``), and
forms can read them to draw sliders.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def bounded(default: Any, minimum: float | None = None, maximum: float | None = None, label: str = "",
            choices: tuple[Any, ...] | None = None) -> Any:
    """A dataclass field with the limits a user-given value must respect (None: no limit)."""
    return field(default=default, metadata={"min": minimum, "max": maximum, "label": label, "choices": choices})
