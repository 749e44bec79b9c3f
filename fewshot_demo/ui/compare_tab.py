"""The "Transfer vs meta" tab: methods side by side on identical episodes, with honest statistics.

Thin over ``fewshot_demo.bench``: the handlers turn UI values into a ``ComparisonConfig`` and a
``ComparisonData``, stream the bench's updates into plots and tables, and raise ``UserInputError``s
that the events turn into messages. They are module-level functions over a ``CompareSession``.

The app passes the image and text tabs' session States to ``build_compare_tab``; the classes of the
tab classified last are then offered as a data set. What differs between image and text data (a
warning before slow episodes, how mistakes are shown) comes from the tabs' modalities.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import gradio as gr

from fewshot_demo.bench.compare_run import run_comparison, stop_within
from fewshot_demo.bench.comparison import (
    DEFAULT_METHODS,
    ComparisonConfig,
    ComparisonData,
    method_label,
)
from fewshot_demo.bench.exports import write_exports
from fewshot_demo.bench.reading import reading
from fewshot_demo.bench.results import ComparisonUpdate, MethodResult
from fewshot_demo.config.checks import check_episodes
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.project import labelled_from_upload
from fewshot_demo.data.builtin import BUILTIN_DATASETS
from fewshot_demo.data.labelled import LoadedData, data_from_items
from fewshot_demo.methods import all_methods, available_methods, cheapest_first
from fewshot_demo.ui.events import COMPARE, UNLIMITED, StatusLine, on
from fewshot_demo.ui.figures import (
    accuracy_figure,
    confusion_figure,
    curve_figure,
    time_figure,
)
from fewshot_demo.ui.image_tab import IMAGE
from fewshot_demo.ui.support.modality import SupportModality, SupportSession, latest_session
from fewshot_demo.ui.text_tab import TEXT

UPLOAD = "upload"
TAB_DATA = "tab"
SHOT_CHOICES = [1, 5, 10]
TABLE_HEADERS = ["method", "family", "encoder", "K-shot", "episodes", "accuracy", "± 95% CI", "ms/episode", "peak MB"]
#: Redraw the plots at most this often while results stream in (matplotlib costs ~0.1 s a figure).
REDRAW_SECONDS = 1.0
#: The modality of a data set by its name (``LoadedData.modality``).
MODALITIES: dict[str, SupportModality] = {modality.name: modality for modality in (IMAGE, TEXT)}

_CANCEL: dict[str, threading.Event] = {}  # session -> its running comparison's stop flag


@dataclass(frozen=True, eq=False)
class CompareSession:
    """One browser session's last comparison (the tab's State value).

    Attributes:
        data: the data set compared, with its embedded pools (reused for the same upload).
        config: what was compared.
        update: the last update (its results feed the per-method details), or None before any.
        upload: the uploaded file's path when the data is an upload, else None.
    """

    data: ComparisonData
    config: ComparisonConfig
    update: ComparisonUpdate | None = None
    upload: str | None = None


def tab_data(modality: str, items: Sequence[Any], labels: Sequence[str]) -> LoadedData:
    """What the user entered in the image or text tab, as a data set to compare on.

    Args:
        modality: "image" (items are paths or PIL images) or "text" (items are strings).
        items: one item per example.
        labels: the class name of each item.
    """
    return data_from_items(modality, items, labels)


def tab_data_label(tabs: Sequence[str]) -> str:
    """What the tab data set is, e.g. "the classes you classified last, in the image or the text tab"."""
    return f"the classes you classified last, in the {' or the '.join(tabs)} tab"


def source_choices(tabs: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Data set choices: the built-ins (missing ones with their install command), upload, and the
    classes of the tabs named in ``tabs`` ("image", "text") when there are any."""
    choices = [(spec.choice_label(), spec.id) for spec in BUILTIN_DATASETS.values()]
    choices.append(("Upload: a zip of class folders of images, or a CSV with text,label", UPLOAD))
    if tabs:
        label = tab_data_label(tabs)
        choices.append((label[0].upper() + label[1:], TAB_DATA))
    return choices


def method_choices() -> list[tuple[str, str]]:
    """(label, name) of the compared methods that are registered, each marked transfer or meta."""
    return [(f"{spec.label} ({spec.family}{', transductive' if spec.transductive else ''})", spec.key)
            for spec in all_methods()]


def results_table(results: Sequence[MethodResult]) -> list[list[Any]]:
    """Rows for the results Dataframe (accuracy and CI in %); methods by their labels, as the plots name them."""
    return [[
        method_label(r.method), r.family, r.encoder_id, r.n_shot, r.summary.episodes, round(100 * r.summary.accuracy, 2),
        round(100 * r.summary.ci95, 2), round(r.summary.ms_per_episode, 2),
        None if r.summary.peak_mb is None else round(r.summary.peak_mb, 1),
    ] for r in results]


def status_markdown(update: ComparisonUpdate, elapsed: float) -> str:
    """The one status line of a run (its progress too), then what was skipped or failed, and notes."""
    share = f", {update.done / update.total:.0%}" if update.total and not update.finished else ""
    lines = [f"**{update.message}** ({update.done}/{update.total} episodes{share}, {elapsed:.1f} s)"]
    lines += [f"- skipped {s}" for s in update.skipped]
    lines += [f"- failed {s}" for s in update.failed]
    lines += [f"- {n}" for n in update.notes]
    return "\n".join(lines)


def comparison_data(source_id: str, upload_value: Any, session: CompareSession | None,
                    *tab_sessions: SupportSession | None) -> tuple[ComparisonData, str | None]:
    """The data set to compare on, and the upload's path when it is an upload.

    ``tab_sessions`` are the image and text tabs' sessions: the one classified last gives the
    "classes from the app" data set.
    """
    if source_id in BUILTIN_DATASETS:
        return ComparisonData.from_builtin(source_id), None
    if source_id == TAB_DATA:
        latest = latest_session(*tab_sessions)
        if latest is None or latest.data is None:
            raise UserInputError("classify classes in the image or text tab first, or pick a built-in data set")
        note = f"the classes you classified last, in the {latest.modality.name} tab"
        data = dataclasses.replace(latest.data, notes=(note, *latest.data.notes))
        return ComparisonData.from_data(f"classes from the {latest.modality.name} tab", data), None
    if source_id != UPLOAD:
        raise UserInputError(f"unknown data set {source_id!r}; pick one from the list")
    path = upload_value if isinstance(upload_value, str) or upload_value is None else getattr(upload_value, "path", None)
    if not path:
        raise UserInputError("upload a zip of class folders (images) or a CSV with text,label columns, then press Run")
    if session is not None and session.upload == path:
        return session.data, path  # same file: reuse its embeddings
    return ComparisonData.from_data(Path(path).name, labelled_from_upload(path), pack_images=True), path


def run(source_id: str, upload_value: Any, way: float, shot_values: list, episode_count: float,
        method_names: list, session: CompareSession | None, image_session: SupportSession | None = None,
        text_session: SupportSession | None = None, request: gr.Request | None = None) -> Iterator[list[Any]]:
    """/compare_run: stream [status, table, reading, 3 plots, session, details choice, CSV, JSON].

    Raises:
        UserInputError: no method, no K-shot, missing data, or data too small for the episodes.
    """
    started = time.perf_counter()
    if not method_names:
        raise UserInputError("choose at least one method")
    check_episodes(int(episode_count), len(method_names))
    config = ComparisonConfig(n_way=int(way), n_shots=tuple(sorted(int(k) for k in shot_values)),
                              n_episodes=int(episode_count),
                              methods=tuple(cheapest_first(method_names)))  # first results within a second or two
    key = getattr(request, "session_hash", None) or "default"
    cancel = threading.Event()
    _CANCEL[key] = cancel
    data = None
    try:
        yield ["**Loading the data...**", *[gr.skip()] * 9]
        data, upload_key = comparison_data(source_id, upload_value, session, image_session, text_session)
        warning = MODALITIES[data.data.modality].episode_warning(config.methods)
        if warning:
            gr.Warning(warning)
        last_draw, drawn = 0.0, 0  # when the plots were drawn, and how many results they show
        for update in stop_within(run_comparison(data, config, cancel=cancel), cancel):  # Stop within 0.1 s
            if update.kind in ("progress", "status"):
                yield [status_markdown(update, time.perf_counter() - started), *[gr.skip()] * 9]
                continue
            # Redraw when there is something new to show, at most once a second until the end; a
            # Stop with nothing new answers without drawing.
            draw = len(update.results) != drawn and (
                update.finished or time.perf_counter() - last_draw >= REDRAW_SECONDS)
            if draw:
                last_draw, drawn = time.perf_counter(), len(update.results)
            yield _results_outputs(CompareSession(data, config, update, upload_key), draw, started)
    finally:  # also when the data cannot be loaded: no Stop event stays behind
        if data is not None:
            data.release_inputs()  # the session keeps the data for another run, not its preprocessed pixels
        if _CANCEL.get(key) is cancel:
            del _CANCEL[key]


def _results_outputs(session: CompareSession, draw: bool, started: float) -> list[Any]:
    """The run's outputs for an update with results; plots only when ``draw``, files once finished."""
    update = session.update
    results = update.results
    plots = [accuracy_figure(results), curve_figure(results), time_figure(results)] if draw and results else [gr.skip()] * 3
    files = [gr.skip()] * 2
    if update.finished and results:
        files = list(write_exports(tempfile.mkdtemp(prefix="fewshot-compare-"), session.data, session.config, update))
    detail_choices = gr.Dropdown(choices=[(f"{method_label(r.method)}, {r.n_shot}-shot", i) for i, r in enumerate(results)],
                                 value=0 if results else None)
    return [status_markdown(update, time.perf_counter() - started), results_table(results),
            reading(update.summaries(), results), *plots, session, detail_choices, *files]


def stop(request: gr.Request | None = None) -> Any:
    """/compare_stop: stop this browser session's comparison (within one episode, one fine-tuning
    step, or one chunk of images being embedded or prepared)."""
    event = _CANCEL.get(getattr(request, "session_hash", None) or "default")
    if event is None:
        return gr.skip()
    event.set()
    return "**Stopping...**"


def details(session: CompareSession | None, choice: Any) -> list[Any]:
    """/compare_details: per-class accuracy, confusion and most-misclassified items of one result."""
    if session is None or session.update is None or not session.update.results:
        raise UserInputError("run a comparison first, then pick a method to inspect")
    results = session.update.results
    index = int(choice or 0)
    if not 0 <= index < len(results):
        raise UserInputError("pick one of the methods that finished")
    result, data = results[index], session.data
    names = data.class_names
    totals = result.confusion.sum(axis=1)
    rows = [[name, None if a is None else round(100 * a, 1), int(totals[c])]
            for c, (name, a) in enumerate(zip(names, result.per_class_accuracy())) if totals[c]]
    labels = data.labels
    mistakes = [(data.data.items[i], names[labels[i]], names[p], n) for i, p, n in result.misclassified(24)]
    return [rows, confusion_figure(result, names), *MODALITIES[data.data.modality].mistakes_view(mistakes)]


# -------------------------------------------------------------------------------------------- tab
@dataclass
class CompareInputsUI:
    """What a run compares: the data set, methods, K-shots, N-way and episodes; Run and Stop."""

    source: gr.Dropdown
    upload: gr.File
    methods: gr.CheckboxGroup
    shots: gr.CheckboxGroup
    n_way: gr.Slider
    episodes: gr.Slider
    run_button: gr.Button
    stop_button: gr.Button


@dataclass
class CompareOutputsUI:
    """What a run shows: the status, the table and its reading, three plots, the files, the details."""

    status: gr.Markdown
    table: gr.Dataframe
    verdict: gr.Markdown
    accuracy_plot: gr.Plot
    curve_plot: gr.Plot
    time_plot: gr.Plot
    csv_file: gr.File
    json_file: gr.File
    detail_choice: gr.Dropdown
    detail_button: gr.Button
    details: list[gr.Component]


def build_compare_inputs(tabs: Sequence[str]) -> CompareInputsUI:
    """The data set (the tabs' classes among them when ``tabs`` name any), methods, shots and episodes."""
    choices = source_choices(tabs)
    installed = [value for label, value in choices if value in BUILTIN_DATASETS and BUILTIN_DATASETS[value].is_installed()]
    with gr.Row():
        with gr.Column(scale=2):
            source = gr.Dropdown(choices=choices, value=(installed or [UPLOAD])[0], label="Data set",
                                 elem_id="compare-source")
            upload = gr.File(label="Upload (a project .zip, a zip of class folders, or CSV/TSV/JSONL with text,label)",
                             file_types=[".zip", ".csv", ".tsv", ".jsonl"], file_count="single", height=130)
        with gr.Column(scale=2):
            methods = gr.CheckboxGroup(choices=method_choices(), value=[m for m in DEFAULT_METHODS if m in available_methods()],
                                       label="Methods", elem_id="compare-methods")
            shots = gr.CheckboxGroup(choices=SHOT_CHOICES, value=[1, 5], label="K-shots", elem_id="compare-shots")
        with gr.Column(scale=1):
            n_way = gr.Slider(2, 10, value=5, step=1, label="N-way", elem_id="compare-way")
            episodes = gr.Slider(10, 600, value=100, step=10, label="Episodes per K-shot", elem_id="compare-episodes")
            with gr.Row():
                run_button = gr.Button("Run", variant="primary", elem_id="compare-run")
                stop_button = gr.Button("Stop", variant="stop", elem_id="compare-stop")
    return CompareInputsUI(source, upload, methods, shots, n_way, episodes, run_button, stop_button)


def build_compare_outputs() -> CompareOutputsUI:
    """The status, results table, reading, plots, files, and the per-method details accordion."""
    status = gr.Markdown(elem_id="compare-status", elem_classes=["fs-status"])
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Results (accuracy and CI in %)", interactive=False,
                         elem_id="compare-table")
    verdict = gr.Markdown(elem_id="compare-reading")
    with gr.Row():
        accuracy_plot = gr.Plot(label="Accuracy with 95% CI")
        curve_plot = gr.Plot(label="Accuracy vs K-shot")
    time_plot = gr.Plot(label="Time per episode and peak memory")
    with gr.Row():
        csv_file = gr.File(label="Results CSV", interactive=False)
        json_file = gr.File(label="Results JSON", interactive=False)
    with gr.Accordion("Per-class accuracy, confusion and mistakes of one method", open=False):
        with gr.Row():
            detail_choice = gr.Dropdown(choices=[], label="Method and K-shot", scale=3)
            detail_button = gr.Button("Show", scale=1)
        with gr.Row():
            per_class = gr.Dataframe(headers=["class", "accuracy %", "queries"], interactive=False, label="Per class")
            confusion_plot = gr.Plot(label="Confusion (rows: true, columns: predicted)")
        mistakes_gallery = gr.Gallery(label="Most often misclassified (true -> predicted, times)", columns=6, height=260,
                                      visible=False)
        mistakes_text = gr.Markdown(visible=False)
    return CompareOutputsUI(status, table, verdict, accuracy_plot, curve_plot, time_plot, csv_file, json_file,
                            detail_choice, detail_button, [per_class, confusion_plot, mistakes_gallery, mistakes_text])


def build_compare_tab(image_session: gr.State | None = None, text_session: gr.State | None = None) -> None:
    """Create the comparison tab's components and events inside the caller's Blocks/Tab context.

    Args:
        image_session: the image tab's session State (a ``SupportSession``), when the app has the tab.
        text_session: the text tab's session State. With either, the classes of the tab classified
            last are offered as a data set.
    """
    session = gr.State(None)  # this browser session's CompareSession
    tabs = [modality.name for modality, state in ((IMAGE, image_session), (TEXT, text_session)) if state is not None]
    gr.Markdown(
        "**Should I meta-learn or just transfer?** Pick a data set, K-shots and methods, and press **Run**: "
        "every method sees the same episodes, every item is embedded once per backbone. Results stream in as each "
        "method finishes; **Stop** keeps what has finished."
        + (f" One data set is {tab_data_label(tabs)}." if tabs else "")
    )
    inputs = build_compare_inputs(tabs)
    outputs = build_compare_outputs()
    # A tab the app does not have gets an empty State, so ``run`` always receives both sessions.
    tab_sessions = [state if state is not None else gr.State(None) for state in (image_session, text_session)]
    # The progress shows on the status line alone: the table, reading and plots stay readable while
    # they update, and Stop is answered at once (its own event, no queue limit).
    on(inputs.run_button.click, run,
       [inputs.source, inputs.upload, inputs.n_way, inputs.shots, inputs.episodes, inputs.methods, session,
        *tab_sessions],
       [outputs.status, outputs.table, outputs.verdict, outputs.accuracy_plot, outputs.curve_plot, outputs.time_plot,
        session, outputs.detail_choice, outputs.csv_file, outputs.json_file],
       api="compare_run", group=COMPARE, errors=StatusLine(0), show_progress="minimal",
       show_progress_on=[outputs.status])
    on(inputs.stop_button.click, stop, None, outputs.status, api="compare_stop", group=UNLIMITED,
       show_progress="hidden")
    on(outputs.detail_button.click, details, [session, outputs.detail_choice], outputs.details,
       api="compare_details")
