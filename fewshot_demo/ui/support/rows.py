"""The class rows' handlers: add, remove, fill and clear (values in, values out; no components)."""

from __future__ import annotations

from typing import Any, Sequence

import gradio as gr

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.limits import Limits
from fewshot_demo.ui.support.modality import SupportModality

#: The class rows a tab has (the most classes a support set may have).
ROWS = Limits.ROWS
INITIAL_CLASSES = 3
#: The status after an edit of the classes, when something was fitted before.
STALE_NOTE = "The classes changed since the last fit: press **Classify** to fit them again."


def class_rows(values: Sequence[Any]) -> list[tuple[str, Any]]:
    """The (name, items) of every class row, empty ones included, from names then items."""
    names, items = values[:ROWS], values[ROWS:2 * ROWS]
    return [((name or "").strip(), item) for name, item in zip(names, items)]


def row_visibility(count: int) -> list[Any]:
    """Show the first ``count`` class rows."""
    return [gr.Row(visible=i < count) for i in range(ROWS)]


def add_class(count: int) -> list[Any]:
    """Show one more class row: [count, *row visibility]."""
    if count >= ROWS:
        raise UserInputError(f"at most {ROWS} classes; remove one before adding another")
    return [count + 1, *row_visibility(count + 1)]


def remove_class(modality: SupportModality, position: int, count: int, *values: Any) -> list[Any]:
    """Remove the class row at ``position``; the rows below move up: [count, *names, *items, *visibility]."""
    names, items = list(values[:ROWS]), list(values[ROWS:2 * ROWS])
    if position < count:
        del names[position], items[position]
        names.append("")
        items.append(modality.empty_item)
        count = max(count - 1, 1)
    return [count, *names, *items, *row_visibility(count)]


def fill_rows(modality: SupportModality, classes: Sequence[tuple[str, Any]]) -> list[Any]:
    """Class rows holding ``classes`` (name, items): [count, *names, *items, *visibility].

    Raises:
        UserInputError: for more classes than the app has rows.
    """
    if len(classes) > ROWS:
        raise UserInputError(
            f"{len(classes)} classes is more than the {ROWS} this app fits at once; keep the "
            f"{ROWS} you need most (the bench command handles any number of classes)"
        )
    count = max(len(classes), 2)
    padding = ROWS - len(classes)
    names = [name for name, _ in classes] + [""] * padding
    items = [item for _, item in classes] + [modality.empty_item] * padding
    return [count, *names, *items, *row_visibility(count)]


def clear_all(modality: SupportModality, extra_values: Sequence[Any] = ()) -> list[Any]:
    """Forget the fitted classifier and empty every row: [session, *fill_rows, *extra_values]."""
    names, items = [""] * ROWS, [modality.empty_item] * ROWS
    return [None, INITIAL_CLASSES, *names, *items, *row_visibility(INITIAL_CLASSES), *extra_values]
