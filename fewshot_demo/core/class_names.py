"""Class names as users type them: cleaned, normalised, and checked to be 2..max_classes distinct names.

Every path that names classes comes here: the image and text tabs, the API's fits, ``fewshot_demo.fit``,
the folders of a zip, the labels of a table, and the comparison's uploads. Names are returned in
Unicode NFC (the same word typed on a Mac and on Windows is one name), and two names that a card would
show alike are refused with the pair named: names equal after case folding, width folding (NFKC:
'ｂｉｒｄ' is 'bird'), removing invisible characters (zero-width spaces and joiners, soft hyphens,
byte-order marks, ...) and collapsing runs of spaces.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.data.texts import clean_text

#: The longest class name; a card shows it whole.
MAX_NAME_CHARS = 60
#: Characters that show as nothing but are not format characters (Unicode category Cf, all of
#: which are dropped too: zero-width space and joiners, word joiner, BOM, soft hyphen, bidi marks).
INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0") | frozenset(map(chr, range(0xFE00, 0xFE10)))


def normal_name(name: object) -> str:
    """A class name as it is kept: readable by every encoder, in NFC, without surrounding spaces."""
    return unicodedata.normalize("NFC", clean_text(name)).strip()


def look_alike_key(name: str) -> str:
    """What a card shows of ``name``, for comparing two names: invisible characters removed, case and
    width folded (NFKC after casefold, which can undo NFKC), runs of spaces made one space."""
    visible = "".join(c for c in name if c not in INVISIBLE and unicodedata.category(c) != "Cf")
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
    return " ".join(folded.split())


def check_distinct(names: Sequence[str]) -> None:
    """Refuse two names that look the same (``look_alike_key``), naming the pair.

    Raises:
        UserInputError: "two classes are named 'cat'" for names that differ only in case, otherwise
            "'bird' and 'ｂｉｒｄ' look the same: rename one".
    """
    seen: dict[str, str] = {}
    for name in names:
        key = look_alike_key(name)
        if key not in seen:
            seen[key] = name
            continue
        first = seen[key]
        if first.lower() == name.lower():
            raise UserInputError(f"two classes are named {name!r}; give each class a different name")
        raise UserInputError(f"{first!r} and {name!r} look the same: rename one (class names that differ only in "
                             "case, width or invisible characters count as one name)")


def check_class_names(names: Sequence[str], max_classes: int | None = None) -> list[str]:
    """Normalise class names and check that there are 2..max_classes distinct, non-empty ones.

    ``max_classes`` defaults to the limit in force (``limits().max_classes``). Names that look the
    same (``check_distinct``) count as the same name.

    Returns:
        The names in NFC, stripped.

    Raises:
        UserInputError: naming the offending class (or pair) and what to do.
    """
    max_classes = limits().max_classes if max_classes is None else max_classes
    cleaned = [normal_name(name) for name in names]
    for position, name in enumerate(cleaned, start=1):
        if not look_alike_key(name):
            raise UserInputError(f"class {position} has no name; give every class a name")
        if len(name) > MAX_NAME_CHARS:
            raise UserInputError(f"class name {name[:20]!r}... is {len(name)} characters; keep names under "
                                 f"{MAX_NAME_CHARS}")
    check_distinct(cleaned)
    if len(cleaned) < 2:
        raise UserInputError("few-shot classification needs at least 2 classes; add another class")
    if len(cleaned) > max_classes:
        raise UserInputError(f"{len(cleaned)} classes is more than the {max_classes} allowed; remove some")
    return cleaned
