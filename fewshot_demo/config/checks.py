"""The checks that refuse a request larger than the limits, before any work is done.

    from fewshot_demo.config.checks import check_count
    check_count(len(paths), limits().max_query_images, "query images", "split them into batches")

Every check raises ``UserInputError`` naming the limit and what to do, and runs on counts, sizes and
headers only: nothing is decoded or embedded before the request is known to fit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits


def check_count(count: int, limit: int, what: str, fix: str) -> None:
    """Refuse more than ``limit`` of something, before any of it is read.

    Raises:
        UserInputError: "40 query images; at most 32 in one call: split them into batches".
    """
    if count > limit:
        raise UserInputError(f"{count} {what}; at most {limit} in one call: {fix}")


def check_file_sizes(paths: Iterable[str | os.PathLike], limit_mb: float | None = None) -> None:
    """Refuse a file larger than the upload limit, from its size on disk (nothing is read).

    Raises:
        UserInputError: naming the file (never its folder) and the limit.
    """
    limit_mb = limits().max_upload_mb if limit_mb is None else limit_mb
    for path in paths:
        try:
            size_mb = os.path.getsize(path) / 2**20
        except OSError:
            continue  # a missing file is reported by whoever reads it, with its name
        if size_mb > limit_mb:
            raise UserInputError(
                f"{Path(path).name} is {size_mb:.1f} MB; files up to {limit_mb:g} MB are accepted. "
                "Resize or compress it and send it again"
            )


def check_episodes(n_episodes: int, n_methods: int) -> None:
    """Refuse a comparison run larger than the episode or method limit.

    Raises:
        UserInputError: with the limit and how to stay under it.
    """
    current = limits()
    if n_episodes > current.max_episodes:
        raise UserInputError(
            f"{n_episodes} episodes per K-shot; this server runs at most {current.max_episodes}. Lower the episodes "
            "(100 already gives intervals of a few points), or run the bench command on your own machine"
        )
    if n_methods > current.max_methods:
        raise UserInputError(
            f"{n_methods} methods in one run; this server compares at most {current.max_methods} at once. "
            "Untick some, or run them in two comparisons"
        )
