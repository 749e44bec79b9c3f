"""The support-set widget's components: class rows, results, and the panels (builders only)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gradio as gr

from fewshot_demo.core.class_names import MAX_NAME_CHARS
from fewshot_demo.ui.events import StatusLine
from fewshot_demo.ui.support.modality import SupportModality
from fewshot_demo.ui.support.project import ProjectUI, build_project_buttons, build_project_outputs
from fewshot_demo.ui.support.rows import INITIAL_CLASSES, ROWS
from fewshot_demo.ui.support.suggestions import SuggestionsUI, build_suggestions


@dataclass
class ClassRowsUI:
    """The class rows' components."""

    count: gr.State
    rows: list[gr.Row]
    names: list[gr.Textbox]
    items: list[gr.Component]
    removes: list[gr.Button]
    add_button: gr.Button
    clear_button: gr.Button
    displays: list[gr.Component] = dataclasses.field(default_factory=list)
    edits: list[Any] = dataclasses.field(default_factory=list)
    project: ProjectUI | None = None

    @property
    def values(self) -> list[gr.Component]:
        """The inputs a handler reads the classes from: the names, then the items."""
        return [*self.names, *self.items]

    @property
    def outputs(self) -> list[Any]:
        """What ``fill_rows`` returns values for."""
        return [self.count, *self.names, *self.items, *self.rows]


@dataclass
class ResultsUI:
    """What Classify shows, made by the tab: it goes stale when the classes change.

    Attributes:
        status: the one status line (results, warnings, or the error that replaced them).
        first_label: the first query's probabilities.
        cards: one card per query.
        extras: the tab's other results with their empty values (the image tab's adaptation plot).
    """

    status: gr.Markdown
    first_label: gr.Label
    cards: gr.HTML
    extras: list[tuple[gr.Component, Any]] = dataclasses.field(default_factory=list)

    @property
    def components(self) -> list[gr.Component]:
        return [self.status, self.first_label, self.cards, *(c for c, _ in self.extras)]

    def empty(self, status: str) -> list[Any]:
        return [status, None, "", *(v for _, v in self.extras)]

    def status_line(self, offset: int = 0) -> StatusLine:
        """The error policy of an event whose outputs hold ``components`` from position ``offset``:
        the error replaces the status line, the label, cards and extras are emptied."""
        empty = self.empty("")
        return StatusLine(offset, cleared={offset + i: value for i, value in enumerate(empty) if i > 0})


@dataclass
class PanelsUI:
    """The self-check panel and the panel that takes the classifier elsewhere."""

    shown_fit: gr.State
    check_button: gr.Button
    check_text: gr.Markdown
    confusion: gr.Dataframe
    map_plot: gr.Plot
    save_button: gr.Button
    saved_file: gr.File
    export_button: gr.Button | None
    export_file: gr.File | None
    export_status: gr.Markdown
    code: gr.Code
    hub_repo: gr.Textbox
    hub_token: gr.Textbox
    hub_button: gr.Button
    hub_status: gr.Markdown
    load_file: gr.File
    load_status: gr.Markdown
    suggestions: SuggestionsUI | None = None

    @property
    def fit_outputs(self) -> list[gr.Component]:
        """What shows one fit: cleared when the fit changes."""
        files = [self.export_file] if self.export_file is not None else []
        return [self.check_text, self.confusion, self.map_plot, self.saved_file, *files, self.export_status,
                self.code, self.hub_status]

    def empty(self) -> list[Any]:
        files = [None] if self.export_file is not None else []
        return ["", gr.Dataframe(value=None, visible=False), gr.Plot(value=None, visible=False), None, *files, "",
                gr.Code(value="", visible=False), ""]


@dataclass
class SupportSetUI:
    """A tab's support-set widget: its session, class rows, results and panels."""

    modality: SupportModality
    session: gr.State
    rows: ClassRowsUI
    panels: PanelsUI
    results: ResultsUI | None = None

    @property
    def stale_outputs(self) -> list[gr.Component]:
        """Everything that shows a fit: the results, the panels and what to add next."""
        suggestions = self.panels.suggestions.outputs if self.panels.suggestions else []
        return [*(self.results.components if self.results else []), *self.panels.fit_outputs, *suggestions]

    def stale_values(self, status: str) -> list[Any]:
        suggestions = self.panels.suggestions.empty() if self.panels.suggestions else []
        return [*(self.results.empty(status) if self.results else []), *self.panels.empty(), *suggestions]


def build_class_rows(modality: SupportModality) -> ClassRowsUI:
    """The class rows with their add/remove/clear buttons, inside the caller's column."""
    count = gr.State(INITIAL_CLASSES)
    rows, names, items, displays, removes, edits = [], [], [], [], [], []
    for index in range(ROWS):
        with gr.Row(visible=index < INITIAL_CLASSES, elem_classes=["fs-class-row"]) as row:
            with gr.Column(scale=1, min_width=120):
                names.append(gr.Textbox(label=f"Class {index + 1}", placeholder="class name", max_length=MAX_NAME_CHARS,
                                        elem_classes=["fs-class-name"]))
                removes.append(gr.Button("Remove class", size="sm", min_width=70, variant="secondary"))
            item = modality.item_box()
            display = modality.display_box()
            items.append(item)
            if display is not None:
                displays.append(display)
            edits.extend(modality.wire_row(item, display))
        rows.append(row)
    with gr.Row():
        add_button = gr.Button("+ Add class", size="sm")
        clear_button = gr.Button("Clear all", size="sm")
        project = build_project_buttons()
    build_project_outputs(project)
    return ClassRowsUI(count, rows, names, items, removes, add_button, clear_button, displays, edits, project)


def build_panels(onnx: str | None = None) -> PanelsUI:
    """The self-check (leave-one-out) and 2-D map panel, then the panel that takes the classifier
    elsewhere: save/load (.safetensors), an ONNX export (its button says ``onnx``; None: no export),
    Python to use it, the Hub."""
    shown_fit = gr.State(None)  # the fit the panels show (SupportSession.fitted_at), or None
    suggestions = build_suggestions()
    with gr.Accordion("Check the support set", open=True):
        check_button = gr.Button("Run self-check (leave-one-out) and map", size="sm")
        check_text = gr.Markdown(elem_classes=["fs-check-text"])
        confusion = gr.Dataframe(label="Confusion (rows: true class, columns: predicted)", interactive=False,
                                 elem_classes=["fs-confusion"], visible=False)
        map_plot = gr.Plot(label="2-D map of the embeddings (PCA)", elem_classes=["fs-map"], visible=False)
    with gr.Accordion("Take the classifier elsewhere: save, export, share", open=False):
        with gr.Row():
            save_button = gr.Button("Save classifier (.safetensors)", size="sm")
            export_button = gr.Button(onnx, size="sm") if onnx else None
        with gr.Row():
            saved_file = gr.File(label="Saved classifier (.safetensors)", interactive=False)
            export_file = gr.File(label="ONNX export", interactive=False, elem_classes=["fs-onnx-file"]) if onnx else None
        export_status = gr.Markdown(elem_classes=["fs-export-status", "fs-status"])
        code = gr.Code(language="python", label="Use it elsewhere", interactive=False, visible=False,
                       elem_classes=["fs-code"])
        with gr.Row():
            hub_repo = gr.Textbox(label="Hugging Face Hub repository", placeholder="user/name", scale=2)
            hub_token = gr.Textbox(label="Write token (not stored)", type="password", scale=2)
            hub_button = gr.Button("Push to the Hub", size="sm", scale=1)
        hub_status = gr.Markdown(elem_classes=["fs-hub-status", "fs-status"])
        with gr.Row():
            load_file = gr.File(label="Load a saved classifier", file_count="single", file_types=[".safetensors"])
            load_status = gr.Markdown()
    return PanelsUI(shown_fit, check_button, check_text, confusion, map_plot, save_button, saved_file, export_button,
                    export_file, export_status, code, hub_repo, hub_token, hub_button, hub_status, load_file,
                    load_status, suggestions)
