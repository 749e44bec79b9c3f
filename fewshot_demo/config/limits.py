"""What one request may ask of the server: the limits, each with its environment variable.

The values come from the environment once (``settings().limits``, or ``limits()`` for short; each
field documents its variable), so a Space owner raises or lowers them without touching code. The
checks that refuse more than a limit are in ``fewshot_demo.config.checks``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Mapping

from fewshot_demo.config.errors import UserInputError


@dataclass(frozen=True)
class Limits:
    """Per-request limits and the server's fairness settings, with their environment variables.

    Attributes:
        max_upload_mb: ``FEWSHOT_MAX_UPLOAD_MB``: largest uploaded file (25). Also the web server's
            upload limit, so a larger file is refused before it is stored.
        max_image_pixels: ``FEWSHOT_MAX_IMAGE_PIXELS``: largest width x height of an image
            (40 000 000); a larger one is refused from its header, before it is decoded.
        max_classes: ``FEWSHOT_MAX_CLASSES``: classes in one support set (20, also the app's rows).
        max_images_per_class: ``FEWSHOT_MAX_IMAGES_PER_CLASS``: support images per class (50).
        max_query_images: ``FEWSHOT_MAX_QUERY_IMAGES``: query images in one call (32).
        max_support_texts: ``FEWSHOT_MAX_SUPPORT_TEXTS``: example texts in one support set (1000).
        max_query_texts: ``FEWSHOT_MAX_QUERY_TEXTS``: query texts in one call (200).
        max_text_chars: ``FEWSHOT_MAX_TEXT_CHARS``: characters of one text that are read (20 000);
            a longer text is cut, with a note.
        max_request_mb: ``FEWSHOT_MAX_REQUEST_MB``: body of one API call other than a file upload
            (10): texts and labels sent as JSON.
        max_episodes: ``FEWSHOT_MAX_EPISODES``: episodes per K-shot in one comparison run (600).
        max_methods: ``FEWSHOT_MAX_METHODS``: methods in one comparison run (8).
        classify_concurrency: ``FEWSHOT_CLASSIFY_CONCURRENCY``: fits and classifications that run
            at once, tabs and API together (2); more wait in the queue.
        predict_concurrency: ``FEWSHOT_PREDICT_CONCURRENCY``: API classifications with a fitted
            handle that run at once (4), apart from fits so a fit never delays them.
        compare_concurrency: ``FEWSHOT_COMPARE_CONCURRENCY``: comparison runs at once (1), in their
            own group, so a long run never holds a classification back.
        max_queue: ``FEWSHOT_MAX_QUEUE``: requests waiting in the queue (64); past it a call is
            refused at once with "the queue is full".
        max_handles: ``FEWSHOT_MAX_HANDLES``: fitted classifiers the API keeps (64); the least
            recently used goes first.
        handle_memory_mb: ``FEWSHOT_HANDLE_MEMORY_MB``: memory the kept classifiers may hold (256).
        handle_ttl_s: ``FEWSHOT_HANDLE_TTL_S``: seconds a handle lives after its last use (1800).
        temp_max_age_s: ``FEWSHOT_TEMP_MAX_AGE_S``: seconds uploaded and generated files are kept
            at most (3600); a session's own files go when the session ends.
    """

    #: The most classes the app has rows for: the default of ``max_classes``, which cannot exceed it.
    ROWS: ClassVar[int] = 20

    max_upload_mb: float = 25.0
    max_image_pixels: int = 40_000_000
    max_classes: int = ROWS
    max_images_per_class: int = 50
    max_query_images: int = 32
    max_support_texts: int = 1000
    max_query_texts: int = 200
    max_text_chars: int = 20_000
    max_request_mb: float = 10.0
    max_episodes: int = 600
    max_methods: int = 8
    classify_concurrency: int = 2
    predict_concurrency: int = 4
    compare_concurrency: int = 1
    max_queue: int = 64
    max_handles: int = 64
    handle_memory_mb: float = 256.0
    handle_ttl_s: float = 1800.0
    temp_max_age_s: float = 3600.0


    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "Limits":
        """Read ``FEWSHOT_<FIELD NAME>`` for every field; unset or empty keeps the default.

        Raises:
            UserInputError: for a value that is not a positive number, naming the variable.
        """
        values: dict[str, Any] = {}
        for item in fields(cls):
            name = env_var(item.name)
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            kind = type(item.default)
            try:
                value = kind(float(raw)) if kind is int and float(raw).is_integer() else kind(raw)
            except ValueError:
                value = None
            if value is None or value <= 0:
                raise UserInputError(f"{name} must be a positive {'whole ' if kind is int else ''}number; got {raw!r}")
            values[item.name] = value
        found = cls(**values)
        if found.max_classes > cls.ROWS:
            raise UserInputError(f"{env_var('max_classes')} can be at most {cls.ROWS}, the class rows the app has")
        return found


def env_var(field_name: str) -> str:
    """The environment variable of a ``Limits`` field: ``max_queue`` -> ``FEWSHOT_MAX_QUEUE``."""
    return "FEWSHOT_" + field_name.upper()
