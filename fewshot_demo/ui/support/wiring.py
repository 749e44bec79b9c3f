"""The support-set widget's events: the rows' buttons, the panels, and what goes stale after an edit."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import gradio as gr

from fewshot_demo.ui.events import StatusLine, on
from fewshot_demo.ui.support.modality import SupportSession
from fewshot_demo.ui.support.panels import (
    export_onnx,
    load_classifier,
    push_classifier,
    save_classifier,
    save_snippet,
    self_check,
)
from fewshot_demo.ui.support.rows import STALE_NOTE, add_class, clear_all, remove_class
from fewshot_demo.ui.support.suggestions import add_suggested, relabel_button, show_suggestions
from fewshot_demo.ui.support.widgets import SupportSetUI


def classes_edited(n_outputs: int, session: SupportSession | None, widget_values: Callable[[str], list[Any]]) -> list[Any]:
    """After a user's edit of the class rows: everything that showed the last fit is cleared."""
    if session is None:
        return [gr.skip()] * n_outputs
    return widget_values(STALE_NOTE)


def panels_after_fit(n_outputs: int, empty: Callable[[], list[Any]], session: SupportSession | None,
                     shown_fit: float | None) -> list[Any]:
    """After a Classify: the panels are cleared when they show another fit than the session's."""
    if session is None or shown_fit is None or shown_fit == session.fitted_at:
        return [gr.skip()] * n_outputs
    return [*empty(), None]


def wire_support_set(
    widget: SupportSetUI,
    encoder: gr.Component,
    clear_outputs: Sequence[gr.Component],
    clear_values: Sequence[Any],
    check_inputs: Sequence[gr.Component] = (),
) -> list[Any]:
    """Wire the rows' buttons and the panels to their handlers.

    Args:
        widget: the tab's widget.
        encoder: the backbone or encoder dropdown (a loaded classifier must match it).
        clear_outputs: the tab's other components that "Clear all" resets, to ``clear_values``.
        check_inputs: inputs the self-check receives after the session (the text tab's API sends
            the encoder).

    Returns:
        The events that change the class rows, for the tab to chain its own updates to.
    """
    events = wire_rows(widget, clear_outputs, clear_values)
    events.append(wire_panels(widget, encoder, check_inputs))
    for event in events:
        show_rows(widget, event)
    return events


def wire_rows(widget: SupportSetUI, clear_outputs: Sequence[gr.Component], clear_values: Sequence[Any]) -> list[Any]:
    """Add, remove and clear the class rows; a user's edit makes what showed the last fit stale.

    Returns:
        The events that change the class rows.
    """
    modality, session, rows, panels = widget.modality, widget.session, widget.rows, widget.panels
    prefix, stale = modality.name, widget.stale_outputs
    events = [on(rows.add_button.click, add_class, rows.count, [rows.count, *rows.rows], api=f"{prefix}_add_class")]
    removed = [
        on(button.click, functools.partial(remove_class, modality, position), [rows.count, *rows.values],
           rows.outputs, api=f"{prefix}_remove_class_0" if position == 0 else None)
        for position, button in enumerate(rows.removes)
    ]
    events.extend(removed)
    cleared = on(rows.clear_button.click, functools.partial(clear_all, modality, tuple(clear_values)), None,
                 [session, *rows.outputs, *clear_outputs], api=f"{prefix}_clear")
    on(cleared.then, lambda: [*widget.stale_values(""), None], None, [*stale, panels.shown_fit])
    events.append(cleared)
    # A user's edit of the classes (and a removed class) makes everything shown about the last fit stale.
    edited = functools.partial(classes_edited, len(stale), widget_values=widget.stale_values)
    on([name.input for name in rows.names] + rows.edits, edited, session, stale, show_progress="hidden",
       trigger_mode="always_last")
    for event in removed:
        on(event.then, edited, session, stale, show_progress="hidden")
    return events


def wire_panels(widget: SupportSetUI, encoder: gr.Component, check_inputs: Sequence[gr.Component]) -> Any:
    """The self-check, save, export, Hub and load panels.

    Returns:
        The load event (it fills the class rows with the loaded classes).
    """
    modality, session, rows, panels = widget.modality, widget.session, widget.rows, widget.panels
    prefix, stale = modality.name, widget.stale_outputs
    checked = on(panels.check_button.click, self_check, [session, *check_inputs],
                 [panels.check_text, panels.confusion, panels.map_plot], api=f"{prefix}_self_check")
    on(checked.success, lambda s: [gr.Dataframe(visible=True), gr.Plot(visible=True), s.fitted_at], session,
       [panels.confusion, panels.map_plot, panels.shown_fit], show_progress="hidden")
    saved = on(panels.save_button.click, save_classifier, session, panels.saved_file, api=f"{prefix}_save")
    on(saved.success, save_snippet, [session, panels.saved_file], [panels.code, panels.shown_fit])
    if panels.export_button is not None and panels.export_file is not None:
        on(panels.export_button.click, export_onnx, session,
           [panels.export_file, panels.export_status, panels.code, panels.shown_fit], api=f"{prefix}_export_onnx",
           errors=StatusLine(1), show_progress_on=[panels.export_status])
    on(panels.hub_button.click, push_classifier, [session, panels.hub_repo, panels.hub_token], panels.hub_status,
       api=f"{prefix}_push", errors=StatusLine(0))
    loaded = on(panels.load_file.upload, functools.partial(load_classifier, modality), [panels.load_file, encoder],
                [session, panels.load_status, *rows.outputs], api=f"{prefix}_load")
    on(loaded.success, lambda: [*widget.stale_values(""), None], None, [*stale, panels.shown_fit])
    return loaded


def show_rows(widget: SupportSetUI, event: Any) -> None:
    """After an event that filled the class rows: their display components show the new items."""
    rows = widget.rows
    if rows.displays:
        on(event.then, lambda *items: widget.modality.display_values(items), rows.items, rows.displays,
           show_progress="hidden")


def scroll_into_view(elem_id: str) -> str:
    """JavaScript that scrolls the element to the top of the window unless its top is already in the
    window's upper half (a one-click example's results start below the fold)."""
    return (f"() => {{ const el = document.getElementById({elem_id!r}); if (!el) return; "
            "const top = el.getBoundingClientRect().top; "
            "if (top < 0 || top > window.innerHeight / 2) el.scrollIntoView({block: 'start'}); }")


def wire_classify(widget: SupportSetUI, event: Any) -> None:
    """After a Classify: clear the panels when they show an older fit than the session's; bring the
    results into view."""
    panels = widget.panels
    outputs = [*panels.fit_outputs, panels.shown_fit]
    on(event.success, functools.partial(panels_after_fit, len(outputs), panels.empty),
       [widget.session, panels.shown_fit], outputs, show_progress="hidden")
    suggestions = panels.suggestions
    if suggestions is not None and suggestions.queries is not None:  # what to add next, from this fit
        on(event.success, show_suggestions, [widget.session, suggestions.queries], suggestions.outputs,
           show_progress="hidden")
    if widget.results is not None and widget.results.status.elem_id:
        on(event.success, None, js=scroll_into_view(widget.results.status.elem_id))


def wire_suggestions(widget: SupportSetUI, queries: gr.Component, refit: Callable[[Any], Any]) -> None:
    """The "What to add next" panel: shown after every Classify wired after this call (``wire_classify``);
    each suggested query's button moves it from ``queries`` into the chosen class row, then ``refit``
    (the tab's Classify, given the trigger) fits and classifies again.

    Call it before the tab wires its Classify events.
    """
    suggestions, rows = widget.panels.suggestions, widget.rows
    if suggestions is None:
        return
    suggestions.queries = queries
    for slot, (chosen, button) in enumerate(zip(suggestions.classes, suggestions.buttons)):
        on(chosen.input, relabel_button, chosen, button, show_progress="hidden")
        added = on(button.click, functools.partial(add_suggested, widget.modality.name, slot),
                   [suggestions.shown, chosen, queries, *rows.values], [queries, *rows.items],
                   api=f"{widget.modality.name}_add_suggested_{slot}" if slot == 0 else None)
        show_rows(widget, added)
        cleared = on(added.success, lambda: widget.stale_values(""), None, widget.stale_outputs,
                     show_progress="hidden")
        refit(cleared.success)
