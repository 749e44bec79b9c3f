"""The "Transfer vs meta" tab: methods side by side on identical episodes, with honest statistics.

Thin over ``fewshot_demo.bench.comparison``: the handlers turn UI values into a ``ComparisonConfig`` and a
``ComparisonData``, stream the core's updates into plots and tables, and raise ValueErrors that the
wiring turns into ``gr.Error`` messages. They are module-level functions over a ``CompareSession``.

The app passes the image and text tabs' session States to ``build_compare_tab``; the classes of the
tab classified last are then offered as a data set.
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
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fewshot_demo.bench.compare_run import run_comparison, stop_within  # noqa: E402
from fewshot_demo.bench.comparison import (  # noqa: E402
    DEFAULT_METHODS,
    ComparisonConfig,
    ComparisonData,
    method_label,
)
from fewshot_demo.bench.exports import write_exports  # noqa: E402
from fewshot_demo.bench.reading import reading  # noqa: E402
from fewshot_demo.bench.results import ComparisonUpdate, MethodResult  # noqa: E402
from fewshot_demo.config.checks import check_episodes  # noqa: E402
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data.builtin import BUILTIN_DATASETS  # noqa: E402
from fewshot_demo.data.labelled import LoadedData, data_from_items  # noqa: E402
from fewshot_demo.data.zips import data_from_upload  # noqa: E402
from fewshot_demo.methods import all_methods, available_methods, cheapest_first  # noqa: E402
from fewshot_demo.ui.common import errors_in_status, subplots, user_errors  # noqa: E402
from fewshot_demo.ui.support_set import SupportSession, latest_session  # noqa: E402

UPLOAD = "upload"
TAB_DATA = "tab"
SHOT_CHOICES = [1, 5, 10]
TABLE_HEADERS = ["method", "family", "encoder", "K-shot", "episodes", "accuracy", "± 95% CI", "ms/episode", "peak MB"]
#: Redraw the plots at most this often while results stream in (matplotlib costs ~0.1 s a figure).
REDRAW_SECONDS = 1.0
FAMILY_COLORS = {"transfer": "#2f81f7", "meta": "#d1661a", "self-supervised": "#1a7f37", "baseline": "#6e7781"}

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


# ------------------------------------------------------------------------------------------ figures
def _label(result: MethodResult) -> str:
    return method_label(result.method)


def accuracy_figure(results: Sequence[MethodResult]):
    """Grouped bars: accuracy per method, one bar per K-shot, with 95% CI error bars."""
    methods = list(dict.fromkeys(r.method for r in results))
    shots = sorted({r.n_shot for r in results})
    figure, axes = subplots(figsize=(6.5, 3.4), dpi=90)
    width = 0.8 / max(len(shots), 1)
    for j, shot in enumerate(shots):
        for i, method in enumerate(methods):
            found = [r for r in results if r.method == method and r.n_shot == shot]
            if not found:
                continue
            r = found[0]
            axes.bar(i + (j - (len(shots) - 1) / 2) * width, r.summary.accuracy, width * 0.9,
                     yerr=r.summary.ci95, capsize=3, color=FAMILY_COLORS[r.family], alpha=0.45 + 0.55 * (j + 1) / len(shots),
                     edgecolor="black", linewidth=0.4)
            axes.text(i + (j - (len(shots) - 1) / 2) * width, 0.02, f"{shot}", ha="center", fontsize=7, color="white")
    axes.set_xticks(range(len(methods)))
    axes.set_xticklabels([method_label(m) for m in methods], fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy (95% CI)")
    axes.set_title("Accuracy per method (bars: K-shot; blue transfer, orange meta)", fontsize=9)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    plt.close(figure)
    return figure


def curve_figure(results: Sequence[MethodResult]):
    """Accuracy vs K-shot, one line per method, with 95% CI error bars."""
    figure, axes = subplots(figsize=(6.5, 3.4), dpi=90)
    for method in dict.fromkeys(r.method for r in results):
        points = sorted((r for r in results if r.method == method), key=lambda r: r.n_shot)
        axes.errorbar([r.n_shot for r in points], [r.summary.accuracy for r in points], yerr=[r.summary.ci95 for r in points],
                      marker="o", capsize=3, label=_label(points[0]), linestyle="-" if points[0].family == "transfer" else "--")
    shots = sorted({r.n_shot for r in results})
    axes.set_xticks(shots)
    axes.set_xlabel("K (support examples per class)")
    axes.set_ylabel("accuracy")
    axes.set_title("Accuracy vs K-shot (solid: transfer, dashed: meta)", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    plt.close(figure)
    return figure


def time_figure(results: Sequence[MethodResult]):
    """Adaptation time per episode (log scale), with the peak memory written next to each bar."""
    figure, axes = subplots(figsize=(6.5, 0.8 + 0.32 * max(len(results), 1)), dpi=90)
    labels = [f"{_label(r)}, {r.n_shot}-shot" for r in results]
    values = [max(r.summary.ms_per_episode, 1e-3) for r in results]
    axes.barh(range(len(results)), values, color=[FAMILY_COLORS[r.family] for r in results])
    for i, r in enumerate(results):
        memory = "" if r.summary.peak_mb is None else f", peak +{r.summary.peak_mb:.1f} MB"
        axes.text(values[i], i, f" {r.summary.ms_per_episode:.1f} ms{memory}", va="center", fontsize=7)
    axes.set_yticks(range(len(results)))
    axes.set_yticklabels(labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlim(min(values) / 2, max(values) * 30)
    axes.set_xlabel("fit + predict time per episode (ms, log scale)")
    figure.tight_layout()
    plt.close(figure)
    return figure


def confusion_figure(result: MethodResult, class_names: Sequence[str]):
    """The confusion matrix over the classes in play (rows true, columns predicted), as fractions of rows."""
    used = [c for c in range(len(class_names)) if result.confusion[c].sum() > 0]
    matrix = result.confusion[np.ix_(used, used)].astype(float)
    matrix = matrix / matrix.sum(axis=1, keepdims=True)
    names = [class_names[c].split("/")[-1] for c in used]
    figure, axes = subplots(figsize=(1.6 + 0.45 * len(used), 1.2 + 0.45 * len(used)), dpi=90)
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(used)):
        for j in range(len(used)):
            if matrix[i, j] >= 0.01:
                axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if matrix[i, j] > 0.5 else "black")
    axes.set_xticks(range(len(used)))
    axes.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    axes.set_yticks(range(len(used)))
    axes.set_yticklabels(names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{_label(result)}, {result.n_shot}-shot", fontsize=9)
    figure.tight_layout()
    plt.close(figure)
    return figure


def results_table(results: Sequence[MethodResult]) -> list[list[Any]]:
    """Rows for the results Dataframe (accuracy and CI in %)."""
    return [[
        r.method, r.family, r.encoder_id, r.n_shot, r.summary.episodes, round(100 * r.summary.accuracy, 2),
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


# ------------------------------------------------------------------------------------------ handlers
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
        note = f"the classes you classified last, in the {latest.modality} tab"
        data = dataclasses.replace(latest.data, notes=(note, *latest.data.notes))
        return ComparisonData.from_data(f"classes from the {latest.modality} tab", data), None
    if source_id != UPLOAD:
        raise UserInputError(f"unknown data set {source_id!r}; pick one from the list")
    path = upload_value if isinstance(upload_value, str) or upload_value is None else getattr(upload_value, "path", None)
    if not path:
        raise UserInputError("upload a zip of class folders (images) or a CSV with text,label columns, then press Run")
    if session is not None and session.upload == path:
        return session.data, path  # same file: reuse its embeddings
    return ComparisonData.from_data(Path(path).name, data_from_upload(path)), path


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
        if data.data.modality == "text" and "finetune" in config.methods:
            gr.Warning("Text fine-tuning trains the encoder on every episode: seconds per episode for short texts, "
                       "about 30 s for long ones on a CPU. "
                       "Lower the episodes, or press Stop to keep what has finished.")
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
    mistakes = result.misclassified(24)
    labels = data.labels
    if data.data.modality == "image":
        gallery = [(data.data.items[i], f"{names[labels[i]]} -> {names[p]} ({n}x)") for i, p, n in mistakes]
        return [rows, confusion_figure(result, names), gr.Gallery(value=gallery, visible=True), gr.Markdown(visible=False)]
    lines = [f"- **{names[labels[i]]} -> {names[p]}** ({n}x): {str(data.data.items[i])[:160]!r}" for i, p, n in mistakes]
    text = "\n".join(lines) or "No mistakes."
    return [rows, confusion_figure(result, names), gr.Gallery(visible=False), gr.Markdown(value=text, visible=True)]


# -------------------------------------------------------------------------------------------- tab
def build_compare_tab(image_session: gr.State | None = None, text_session: gr.State | None = None) -> None:
    """Create the comparison tab's components and events inside the caller's Blocks/Tab context.

    Args:
        image_session: the image tab's session State (a ``SupportSession``), when the app has the tab.
        text_session: the text tab's session State. With either, the classes of the tab classified
            last are offered as a data set.
    """
    session = gr.State(None)  # this browser session's CompareSession
    tabs = [name for name, state in (("image", image_session), ("text", text_session)) if state is not None]
    gr.Markdown(
        "**Should I meta-learn or just transfer?** Pick a data set, K-shots and methods, and press **Run**: "
        "every method sees the same episodes, every item is embedded once per backbone. Results stream in as each "
        "method finishes; **Stop** keeps what has finished."
        + (f" One data set is {tab_data_label(tabs)}." if tabs else "")
    )
    choices = source_choices(tabs)
    installed = [value for label, value in choices if value in BUILTIN_DATASETS and BUILTIN_DATASETS[value].is_installed()]
    with gr.Row():
        with gr.Column(scale=2):
            source = gr.Dropdown(choices=choices, value=(installed or [UPLOAD])[0], label="Data set",
                                 elem_id="compare-source")
            upload = gr.File(label="Upload (zip of class folders, or CSV/TSV/JSONL with text,label)",
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

    # A tab the app does not have gets an empty State, so ``run`` always receives both sessions.
    tab_sessions = [state if state is not None else gr.State(None) for state in (image_session, text_session)]
    run_inputs = [source, upload, n_way, shots, episodes, methods, session, *tab_sessions]
    run_outputs = [status, table, verdict, accuracy_plot, curve_plot, time_plot, session, detail_choice, csv_file, json_file]
    # The progress shows on the status line alone: the table, reading and plots stay readable while
    # they update, and Stop is answered at once (its own event, no queue limit).
    run_button.click(errors_in_status(run, len(run_outputs), 0), run_inputs, run_outputs, api_name="compare_run",
                     concurrency_limit=2,
                     show_progress="minimal", show_progress_on=[status])
    stop_button.click(stop, None, status, api_name="compare_stop", concurrency_limit=None, show_progress="hidden")
    detail_button.click(user_errors(details), [session, detail_choice],
                        [per_class, confusion_plot, mistakes_gallery, mistakes_text], api_name="compare_details")
