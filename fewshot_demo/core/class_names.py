"""Class names as users type them: cleaned, and checked to be 2..max_classes distinct non-empty names."""

from __future__ import annotations

from typing import Sequence

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.data.texts import clean_text

#: The longest class name; a card shows it whole.
MAX_NAME_CHARS = 60


def check_class_names(names: Sequence[str], max_classes: int | None = None) -> list[str]:
    """Strip class names and check that there are 2..max_classes distinct, non-empty ones.

    ``max_classes`` defaults to the limit in force (``limits().max_classes``). Names that differ
    only in case count as the same name.

    Raises:
        UserInputError: naming the offending class and what to do.
    """
    max_classes = limits().max_classes if max_classes is None else max_classes
    cleaned = [clean_text(name).strip() for name in names]
    for position, name in enumerate(cleaned, start=1):
        if not name:
            raise UserInputError(f"class {position} has no name; give every class a name")
        if len(name) > MAX_NAME_CHARS:
            raise UserInputError(f"class name {name[:20]!r}... is {len(name)} characters; keep names under "
                                 f"{MAX_NAME_CHARS}")
    seen: dict[str, str] = {}
    for name in cleaned:
        key = name.casefold()
        if key in seen:
            raise UserInputError(f"two classes are named {name!r}; give each class a different name")
        seen[key] = name
    if len(cleaned) < 2:
        raise UserInputError("few-shot classification needs at least 2 classes; add another class")
    if len(cleaned) > max_classes:
        raise UserInputError(f"{len(cleaned)} classes is more than the {max_classes} allowed; remove some")
    return cleaned
