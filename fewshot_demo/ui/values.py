"""What Gradio components hand a handler, normalised: the paths in a File, Image or Gallery value."""

from __future__ import annotations

import os
from typing import Any


def file_paths(value: Any) -> list[str]:
    """Normalise a gr.File, gr.Image or gr.Gallery value (None, a path, a FileData, a (path, caption)
    pair, or a list of them) to paths."""
    if value is None:
        return []
    items = value if isinstance(value, list) or (isinstance(value, tuple) and not _captioned(value)) else [value]
    items = [item[0] if _captioned(item) else item for item in items]
    return [str(item if isinstance(item, (str, os.PathLike)) else getattr(item, "path", item)) for item in items]


def _captioned(item: Any) -> bool:
    """True for a gallery's (path, caption) pair."""
    return isinstance(item, tuple) and len(item) == 2 and (item[1] is None or isinstance(item[1], str)) \
        and not isinstance(item[0], (tuple, list))
