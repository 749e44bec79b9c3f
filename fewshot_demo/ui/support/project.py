"""Save project / Open project: the class rows, the method with its options, the encoder and the queries
in one file (``core.project``), reopened ready to edit and classify again.

The buttons sit beside "+ Add class" (``build_project_row``); a tab wires them with what it has
beyond the shared rows (``ProjectControls``: its encoder, method, settings and query inputs, and how
its values become a project's items and options and back). An open reads and checks the whole file
before it returns anything, so a file that is refused leaves every row as it was.
"""

from __future__ import annotations

import functools
import html
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core.project import Project, open_upload, write_project
from fewshot_demo.ui.events import StatusLine, on
from fewshot_demo.ui.support.modality import SupportModality
from fewshot_demo.ui.support.rows import class_rows, fill_rows
from fewshot_demo.ui.temp_files import TEMP_PREFIX
from fewshot_demo.ui.values import file_paths


@dataclass
class ProjectUI:
    """The project buttons (in the rows' button row), the saved file and the status."""

    save_button: gr.Button
    open_button: gr.UploadButton
    saved_file: gr.File | None = None
    status: gr.Markdown | None = None


def build_project_buttons() -> ProjectUI:
    """Save project and Open project, inside the caller's Row (the rows' "+ Add class" row)."""
    save_button = gr.Button("Save project", size="sm", elem_classes=["fs-project-save"])
    open_button = gr.UploadButton("Open project", size="sm", file_types=[".zip"], file_count="single",
                                  elem_classes=["fs-project-open"])
    return ProjectUI(save_button, open_button)


def build_project_outputs(project: ProjectUI) -> ProjectUI:
    """The saved project's file (shown once saved) and the project status, below the buttons."""
    project.saved_file = gr.File(label="Project file (open it later with Open project)", interactive=False,
                                 visible=False, elem_classes=["fs-project-file"])
    project.status = gr.Markdown(elem_classes=["fs-project-status", "fs-status"])
    return project


@dataclass
class ProjectControls:
    """What a tab adds to a project beyond the class rows, and how its values convert.

    Attributes:
        encoder, method: the tab's encoder and method dropdowns.
        settings: the method's settings, in the order ``options_of`` takes them after the method.
        queries: the query inputs.
        options_of: (method, *settings) -> the method's options.
        settings_of: options -> one value per setting (``gr.skip()``: left as it is).
        queries_of: (*query values) -> query items (image paths or texts).
        queries_value: query items -> one value per query input.
        row_items: a class row's value -> its items; ``row_value`` the reverse.
    """

    encoder: gr.Component
    method: gr.Component
    settings: list[gr.Component]
    queries: list[gr.Component]
    options_of: Callable[..., dict[str, Any]]
    settings_of: Callable[[dict[str, Any]], list[Any]]
    queries_of: Callable[..., list[Any]]
    queries_value: Callable[[list[Any]], list[Any]]
    row_items: Callable[[Any], list[Any]]
    row_value: Callable[[list[Any]], Any]


def save_project(modality: SupportModality, controls: ProjectControls, encoder_id: str, method: str,
                 *values: Any) -> list[Any]:
    """/{modality}_save_project: write the rows, method, options, encoder and queries; [file, status].

    ``values`` are the settings, then the query inputs, then the class rows' names and items.

    Raises:
        UserInputError: no class with examples yet, or a row the project cannot hold.
    """
    settings, rest = values[:len(controls.settings)], values[len(controls.settings):]
    query_values, class_values = rest[:len(controls.queries)], rest[len(controls.queries):]
    classes = [(name, controls.row_items(item)) for name, item in class_rows(class_values)]
    classes = [(name, items) for name, items in classes if name or items]
    if not any(items for _, items in classes):
        raise UserInputError("add classes with examples first (or click an example set), then save the project")
    project = Project(modality.name, classes, method, controls.options_of(method, *settings), encoder_id,
                      controls.queries_of(*query_values))
    folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "project-"))
    path = write_project(project, folder / f"fewshot-{modality.name}-project.zip")
    size_mb = path.stat().st_size / 2**20
    status = (f"**Saved the project**: {len(classes)} classes, {len(project.labelled[0])} examples, "
              f"{len(project.queries)} queries, `{method}` on `{encoder_id}` ({size_mb * 1024:.0f} KB). "
              "Download it below; **Open project** brings it back.")
    if size_mb > limits().max_upload_mb:
        status += (f" It is larger than the {limits().max_upload_mb:g} MB this server accepts back: keep fewer or "
                   "smaller images to reopen it here (`fsd.fit` reads it at any size).")
    return [gr.File(value=str(path), visible=True), status]


def open_project(modality: SupportModality, controls: ProjectControls, value: Any) -> list[Any]:
    """/{modality}_open_project: [*fill_rows, encoder, method, *settings, *queries, session, status].

    The whole file is read and checked first: a refused file changes nothing on the page.

    Raises:
        UserInputError: a foreign, damaged, oversized or newer file, or a project of the other tab.
    """
    path = next(iter(file_paths(value)), None)
    n_outputs = len(fill_rows(modality, [])) + 4 + len(controls.settings) + len(controls.queries)
    if path is None:
        return [gr.skip()] * n_outputs
    name = Path(path).name
    with open_upload(path, name) as project:
        if project.modality != modality.name:
            raise UserInputError(f"{name} holds {project.modality}s; open it in the {project.modality.title()} tab")
        kept = project.copied_to(Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "project-")))
    rows = fill_rows(modality, [(class_name, controls.row_value(items)) for class_name, items in kept.classes])
    count = len(kept.labelled[0])
    status = (f"**Opened {html.escape(name)}**: {len(kept.classes)} classes, {count} examples, "
              f"{len(kept.queries)} queries, `{kept.method}` on `{kept.encoder_id}`"
              + (f", saved {html.escape(kept.created)}" if kept.created else "") + ". Press **Classify**.")
    notes = "".join(f"\n- {html.escape(note)}" for note in kept.notes)
    return [*rows, kept.encoder_id, kept.method, *controls.settings_of(kept.options),
            *controls.queries_value(kept.queries), None, status + notes]


def wire_project(widget: Any, controls: ProjectControls) -> Any:
    """Wire the widget's project buttons (``widget.rows.project``); returns the open event.

    Args:
        widget: the tab's ``SupportSetUI``.
        controls: what the tab adds to a project.
    """
    modality, rows, ui = widget.modality, widget.rows, widget.rows.project
    prefix = modality.name
    on(ui.save_button.click, functools.partial(save_project, modality, controls),
       [controls.encoder, controls.method, *controls.settings, *controls.queries, *rows.values],
       [ui.saved_file, ui.status], api=f"{prefix}_save_project", errors=StatusLine(1),
       show_progress_on=[ui.status])
    outputs = [*rows.outputs, controls.encoder, controls.method, *controls.settings, *controls.queries,
               widget.session, ui.status]
    opened = on(ui.open_button.upload, functools.partial(open_project, modality, controls), ui.open_button, outputs,
                api=f"{prefix}_open_project", errors=StatusLine(len(outputs) - 1), show_progress_on=[ui.status])
    if rows.displays:  # as wiring.show_rows does (wiring imports the widgets, which import this module)
        on(opened.then, lambda *items: modality.display_values(items), rows.items, rows.displays,
           show_progress="hidden")
    # What showed the last fit belongs to other classes now; the project status stays.
    on(opened.success, lambda: [*widget.stale_values(""), None, gr.File(visible=False)], None,
       [*widget.stale_outputs, widget.panels.shown_fit, ui.saved_file], show_progress="hidden")
    return opened
