"""What API callers send, read before any work is done: uploaded files, images inline as data URLs,
one label per item, a method's options."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from fewshot_demo.config.checks import check_count
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits

#: The start of an image sent inline in /predict, as browsers write data URLs: it spares the caller
#: the upload request (one HTTP round trip and a temporary file on the server).
DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class Upload:
    """A file the caller sent: where it is on this server and the name the caller gave it."""

    path: str
    name: str


def inline_image(query: str, number: int, max_mb: float) -> bytes:
    """The bytes of query image ``number`` (1-based) sent inline as a data URL ("data:image/png;base64,...").

    Raises:
        UserInputError: when it is not such a data URL, is larger than ``max_mb``, or is not base64.
    """
    start = DATA_URL.match(query)
    if start is None:
        raise UserInputError("this is an image classifier: send the queries as image files (gradio_client: "
                             "handle_file(path)) or as data URLs (data:image/png;base64,...), not as text")
    payload = query[start.end():]
    if len(payload) * 3 / 4 > max_mb * 2**20:
        raise UserInputError(f"query {number} is larger than the {max_mb:g} MB this server accepts; "
                             "resize the image and send it again")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise UserInputError(f"query {number} is not valid base64 after its data: prefix; encode the file again") from None


def group_by_label(items: Sequence[Any], labels: Sequence[str] | None, what: str) -> dict[str, list[Any]]:
    """{class: items} from items and one label per item, with the class and per-class limits."""
    if labels is None or len(labels) != len(items):
        got = "no labels" if labels is None else f"{len(labels)} labels"
        raise UserInputError(f"{len(items)} {what} but {got}; give one class name per {what[:-1]}, in the same order")
    classes: dict[str, list[Any]] = {}
    for item, label in zip(items, labels):
        classes.setdefault(" ".join(str(label).split()), []).append(item)
    current = limits()
    check_count(len(classes), current.max_classes, "classes", "keep the classes you need most")
    return classes


def method_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A method's options as keywords: a mapping of names (the registry checks names and bounds)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
        raise UserInputError('options must be a JSON object of option names and values, e.g. {"inner_steps": 5}')
    reserved = {"modality", "support", "method", "encoder"} & set(options)
    if reserved:
        raise UserInputError(f"{', '.join(sorted(reserved))} is a parameter of its own, not a method option")
    return dict(options)
