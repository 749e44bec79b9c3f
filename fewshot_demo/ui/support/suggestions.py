"""The "What to add next" panel: after each Classify, the advice of ``core.suggestions``, and for each
suggested query a one-click "Add to <class>" that moves it into that class's row and fits again.

The handlers are plain functions over values (the tab's session, its query input, the class rows);
``wire_suggestions`` wires them, and ``wiring.wire_classify`` shows the panel after every Classify.
What a query is in the query input (a file, a line of text) is the modality's ``QueryMoves``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.suggestions import Suggestions
from fewshot_demo.data.images import load_image
from fewshot_demo.ui.cards import thumbnail_data_uri
from fewshot_demo.ui.support.modality import SupportSession
from fewshot_demo.ui.support.rows import ROWS
from fewshot_demo.ui.values import file_paths

#: Suggested queries shown, each with its own "Add to" button.
SLOTS = 3
#: What the panel says before a fit, and after the classes changed.
EMPTY = ""


@dataclass(frozen=True)
class QueryMoves:
    """How one modality finds a classified query in its query input and moves it into a class row.

    Attributes:
        find: (query input value, query name) -> the query's entry (a file path, a line), or None.
        preview: entry -> HTML that shows it.
        remove: (query input value, entry) -> the query input without it.
        append: (class row items value, entry) -> the row's items with it.
    """

    find: Callable[[Any, str], Any]
    preview: Callable[[Any], str]
    remove: Callable[[Any, Any], Any]
    append: Callable[[Any, Any], Any]


def _find_file(value: Any, name: str) -> str | None:
    return next((path for path in file_paths(value) if Path(path).name == name), None)


def _image_preview(path: str) -> str:
    try:
        return f'<img src="{thumbnail_data_uri(load_image(path), 72)}" width="72" height="72" alt="query">'
    except ValueError:
        return ""


def _text_of(line: str) -> str:
    """A query line without the "| class" or tab-separated class that may end it."""
    for separator in ("\t", " | "):
        text, found, label = line.rpartition(separator)
        if found and text.strip() and label.strip():
            return text.strip()
    return line.strip()


def _find_line(value: Any, name: str) -> str | None:
    return next((line for line in (value or "").splitlines() if line.strip() and _text_of(line) == name.strip()), None)


def _remove_line(value: Any, line: str) -> str:
    lines = (value or "").splitlines()
    lines.remove(line)
    return "\n".join(lines)


def _append_line(block: Any, line: str) -> str:
    block = (block or "").rstrip("\n")
    return f"{block}\n{_text_of(line)}" if block.strip() else _text_of(line)


#: Per modality (``SupportModality.name``): what a query is in its query input.
QUERY_MOVES: dict[str, QueryMoves] = {
    "image": QueryMoves(_find_file, _image_preview, lambda value, path: [p for p in file_paths(value) if p != path],
                        lambda items, path: [*file_paths(items), path]),
    "text": QueryMoves(_find_line, lambda line: f"<q>{html.escape(_text_of(line))}</q>", _remove_line, _append_line),
}


@dataclass
class SuggestionsUI:
    """The panel's components; ``queries`` is the tab's query input (set by ``wire_suggestions``)."""

    summary: gr.HTML
    shown: gr.State
    rows: list[gr.Row]
    previews: list[gr.HTML]
    classes: list[gr.Dropdown]
    buttons: list[gr.Button]
    queries: gr.Component | None = field(default=None)

    @property
    def outputs(self) -> list[gr.Component]:
        return [self.summary, self.shown, *self.rows, *self.previews, *self.classes, *self.buttons]

    def empty(self) -> list[Any]:
        return [EMPTY, [], *[gr.Row(visible=False)] * SLOTS, *[""] * SLOTS,
                *[gr.Dropdown(choices=[], value=None)] * SLOTS, *[gr.Button(value="Add")] * SLOTS]


def build_suggestions() -> SuggestionsUI:
    """The panel: the advice, then one row per suggested query with its class and its "Add to" button."""
    with gr.Accordion("What to add next", open=True, elem_classes=["fs-suggestions"]):
        summary = gr.HTML(elem_classes=["fs-suggestions-text"])
        shown = gr.State([])  # the query name each slot shows
        rows, previews, classes, buttons = [], [], [], []
        for _ in range(SLOTS):
            with gr.Row(visible=False, elem_classes=["fs-suggested-query"]) as row:
                previews.append(gr.HTML(elem_classes=["fs-suggested-preview"]))
                classes.append(gr.Dropdown(choices=[], label="Its class", scale=1, min_width=140))
                buttons.append(gr.Button("Add", size="sm", scale=1, variant="secondary", elem_classes=["fs-add"]))
            rows.append(row)
    return SuggestionsUI(summary, shown, rows, previews, classes, buttons)


# ------------------------------------------------------------------------------------------ handlers
def show_suggestions(session: SupportSession | None, query_value: Any) -> list[Any]:
    """After a Classify: [advice HTML, slot query names, *slot rows, *previews, *class choices, *buttons]."""
    if session is None or session.query_features is None:
        return [EMPTY, [], *[gr.skip()] * (4 * SLOTS)]
    classifier = session.classifier
    advice = classifier.suggestions(session.query_features)
    moves = QUERY_MOVES[session.modality.name]
    slots = [q for q in advice.queries if moves.find(query_value, session.query_names[q.index]) is not None][:SLOTS]
    names = [session.query_names[q.index] for q in slots]
    rows, previews, classes, buttons = [], [], [], []
    for position in range(SLOTS):
        if position >= len(slots):
            rows.append(gr.Row(visible=False))
            previews.append("")
            classes.append(gr.Dropdown(choices=[], value=None))
            buttons.append(gr.Button(value="Add"))
            continue
        query = slots[position]
        rows.append(gr.Row(visible=True))
        previews.append(f'<div class="fs-suggested" data-query="{html.escape(names[position])}">'
                        f"{moves.preview(moves.find(query_value, names[position]))}<div>"
                        f"<b>{html.escape(_short(names[position]))}</b><br>{html.escape(query.label)} or "
                        f"{html.escape(query.runner_up)}? (margin {query.margin:.0%})</div></div>")
        classes.append(gr.Dropdown(choices=list(classifier.class_names), value=query.label))
        buttons.append(gr.Button(value=f"Add to {query.label}"))
    return [advice_html(advice, session, bool(slots)), names, *rows, *previews, *classes, *buttons]


def advice_html(advice: Suggestions, session: SupportSession, has_slots: bool) -> str:
    """The advice as a short list: confused pairs with their examples, then weak classes, then the queries."""
    items = []
    for pair in advice.confused_pairs[:3]:
        if pair.mistakes:
            examples = "".join(_example(session, a) + " looks like " + _example(session, b)
                               for a, b in pair.examples[:2])
            items.append(f"<li><b>{html.escape(pair.true_class)}</b> is confused with "
                         f"<b>{html.escape(pair.predicted_class)}</b>: {pair.mistakes} of its examples were "
                         f"taken for it when held out. {examples} Add examples that tell them apart.</li>")
        else:
            items.append(f"<li>{pair.torn_queries} quer{'y is' if pair.torn_queries == 1 else 'ies are'} torn "
                         f"between <b>{html.escape(pair.true_class)}</b> and "
                         f"<b>{html.escape(pair.predicted_class)}</b>.</li>")
    for weak in advice.classes[:3]:
        outlier = f" Least typical: {_example(session, weak.outlier)}" if weak.reason == "spread" else ""
        items.append(f"<li>{html.escape(weak.message)}.{outlier}</li>")
    if has_slots:
        items.append("<li>Label these queries next (most useful first: unsure, yet typical of the others). "
                     "Pick the right class and press its button: it moves into that class and everything is "
                     "fitted again.</li>")
    if not items:
        items.append("<li>Nothing stands out: the classes are separated and the queries are clear.</li>")
    return f'<ul class="fs-advice">{"".join(items)}</ul>'


def _example(session: SupportSession, index: int | None) -> str:
    if index is None:
        return ""
    caption = html.escape(session.captions[index]) if index < len(session.captions) else f"example {index + 1}"
    picture = session.thumbnails[index] if session.thumbnails and index < len(session.thumbnails) else None
    image = f'<img src="{picture}" width="40" height="40" alt="{caption}"> ' if picture else ""
    return f'<span class="fs-example">{image}<i>{caption}</i></span>'


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def relabel_button(chosen: str | None) -> Any:
    """The button names the class chosen for its query."""
    return gr.Button(value=f"Add to {chosen}" if chosen else "Add")


def add_suggested(modality_name: str, slot: int, shown: Sequence[str], chosen: str | None, query_value: Any,
                  *class_values: Any) -> list[Any]:
    """Move the slot's query into the class row named ``chosen``: [query input, *every row's items].

    Raises:
        UserInputError: when the query or the class row is no longer there.
    """
    moves = QUERY_MOVES[modality_name]
    if slot >= len(shown) or not chosen:
        raise UserInputError("classify again: this suggestion is no longer current")
    entry = moves.find(query_value, shown[slot])
    if entry is None:
        raise UserInputError(f"{shown[slot]!r} is no longer among the queries; classify again for new suggestions")
    names, items = [(name or "").strip() for name in class_values[:ROWS]], list(class_values[ROWS:2 * ROWS])
    matches = [i for i, name in enumerate(names) if name.casefold() == chosen.strip().casefold()]
    if not matches:
        raise UserInputError(f"no class row is named {chosen!r} any more; pick another class or classify again")
    items[matches[0]] = moves.append(items[matches[0]], entry)
    return [moves.remove(query_value, entry), *items]
