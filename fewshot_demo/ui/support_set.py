"""The support-set editor the image and text tabs share, and the handlers behind it.

A tab is a ``SupportModality`` (what a class row holds, how a support set is fitted and queries are
read) plus the widget built here: class rows (a name and items, with a count) with add, remove and
clear, the self-check (leave-one-out) and 2-D map panel, and the panel that takes the fitted
classifier elsewhere (save/load, an ONNX export where the modality has one, the Hugging Face Hub).

Everything shown about a fit goes stale when the classes change: an edit of the class rows clears
the results, the self-check and the exports, and says so in the status; a Classify that refits
clears the self-check and exports of the previous fit.

Handlers are module-level functions over a ``SupportSession`` (the value of the tab's ``gr.State``),
so they can be called without a server; the builders only create components and wire events.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import html
import json
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import gradio as gr
import torch
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.classifier import MAX_CLASSES, FewShotClassifier, Prediction
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.ui.common import (
    confusion_table,
    embedding_map_figure,
    errors_in_status,
    file_paths,
    known_truths,
    notes_markdown,
    prediction_cards_html,
    self_check_markdown,
    truth_summary,
    user_errors,
)

INITIAL_CLASSES = 3
#: The status after an edit of the classes, when something was fitted before.
STALE_NOTE = "The classes changed since the last fit: press **Classify** to fit them again."
#: A callback ``(fraction done, message)``, the core's progress convention.
ProgressFn = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    return None


# ------------------------------------------------------------------------------------ session
@dataclass(frozen=True, eq=False)
class SupportSession:
    """One browser session's fitted classifier in the image or text tab (the tab's State value).

    Attributes:
        modality: "image" or "text".
        classifier: the fitted, or loaded, classifier.
        captions: one caption per support item ("class: file name or text").
        thumbnails: one small data URI per support image (image tab), or None.
        support_key: what the classifier was fitted on (encoder, method, options and classes): the
            next click reuses the fit while it is unchanged. None for a classifier loaded from a file.
        fit_notes: warnings from reading and fitting the support set, shown again when the fit is reused.
        data: the support set as comparison data, offered by the comparison tab; None when loaded.
        query_names: the last classified queries (file names or the texts).
        query_features: (n_query, d) their frozen features, for the 2-D map.
        query_labels: (n_query,) their predicted labels.
        classified_at: ``time.monotonic()`` of the last classification (the comparison tab takes
            the classes of the tab classified last).
        fitted_at: ``time.monotonic()`` of the fit (or load): panels showing an older one are stale.
    """

    modality: str
    classifier: FewShotClassifier
    captions: tuple[str, ...]
    thumbnails: tuple[str, ...] | None = None
    support_key: str | None = None
    fit_notes: tuple[str, ...] = ()
    data: LoadedData | None = None
    query_names: tuple[str, ...] = ()
    query_features: Tensor | None = None
    query_labels: tuple[int, ...] = ()
    classified_at: float | None = None
    fitted_at: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def loaded(self) -> bool:
        """True for a classifier loaded from a file (it has no support items to refit on)."""
        return self.support_key is None

    def with_queries(self, names: Sequence[str], features: Tensor, labels: Sequence[int]) -> "SupportSession":
        """This session after classifying queries."""
        return dataclasses.replace(
            self, query_names=tuple(names), query_features=features, query_labels=tuple(labels),
            classified_at=time.monotonic(),
        )


def latest_session(*sessions: SupportSession | None) -> SupportSession | None:
    """The session classified last among those that have comparison data (None: none has)."""
    usable = [s for s in sessions if s is not None and s.data is not None and s.classified_at is not None]
    return max(usable, key=lambda s: s.classified_at, default=None)


@dataclass(frozen=True)
class Queries:
    """Queries read from the tab, ready to classify.

    Attributes:
        items: PIL images or texts.
        names: one display name per item.
        thumbnails: one data URI per item, or None per item (text).
        notes: what was skipped.
        hints: per item, what may name its true class (an image file's folder), or None.
    """

    items: list[Any]
    names: list[str]
    thumbnails: list[str | None]
    notes: list[str] = dataclasses.field(default_factory=list)
    hints: list[str | None] = dataclasses.field(default_factory=list)


class SupportModality(ABC):
    """What differs between the image and the text tab; the widget and the handlers are shared.

    Attributes:
        name: "image" or "text" (also the prefix of API names).
        empty_item: the value of an empty class row's items box.
        query_noun: "query images" or "query texts", for messages.
        tuned: what a fine-tune adapts ("backbone", "encoder"), for messages.
        features_noun: "features" or "embeddings", for messages.
        add_items_hint: how to fit a new classifier while a loaded one is in use.
        truth_source: where a query's true class comes from, for the reader.
    """

    name: ClassVar[str]
    empty_item: ClassVar[Any]
    query_noun: ClassVar[str]
    tuned: ClassVar[str]
    features_noun: ClassVar[str]
    add_items_hint: ClassVar[str]
    truth_source: ClassVar[str]

    @abstractmethod
    def item_box(self) -> gr.Component:
        """A class row's items component, the one handlers read (created inside the caller's Row)."""

    def display_box(self) -> gr.Component | None:
        """A component that shows a row's items (the image tab's thumbnails), or None."""
        return None

    def display_values(self, items: Sequence[Any]) -> list[Any]:
        """What the rows' display components show for these items ([] without display components).

        Handlers that fill the rows return the items only (their API stays the items); the widget
        then shows them with this, in a follow-up event.
        """
        return []

    def wire_row(self, item: gr.Component, display: gr.Component | None) -> list[Any]:
        """Wire a row's own events (its count, display sync); return the triggers of a user's edit."""
        return []

    def with_truths(self, queries: Queries, class_names: Sequence[str]) -> tuple[Queries, list[str | None]]:
        """The queries as they are classified, and the true class of each where it is known."""
        return queries, known_truths(queries.hints or [None] * len(queries.items), class_names)

    @abstractmethod
    def has_items(self, item: Any) -> bool:
        """True when a class row's items value holds something."""

    @abstractmethod
    def load_encoder(self, encoder_id: str) -> Any:
        """The backbone or encoder (cached after the first load)."""

    @abstractmethod
    def fit(self, rows: list[tuple[str, Any]], encoder: Any, method: str, options: dict[str, Any], key: str,
            progress: ProgressFn) -> SupportSession:
        """Check the class rows, fit ``method`` on them; return a fresh session (no queries yet).

        Raises:
            UserInputError: with what to fix (too few classes, a class without items, ...).
        """

    @abstractmethod
    def read_queries(self, value: Any) -> Queries:
        """Read the query input.

        Raises:
            UserInputError: when there is no usable query.
        """

    @abstractmethod
    def predict(self, classifier: FewShotClassifier, encoder: Any, items: list[Any]) -> tuple[list[Prediction], Tensor, list[str]]:
        """Classify the queries; return (predictions, (n_query, d) frozen features, notes)."""

    def support_key(self, rows: list[tuple[str, Any]], encoder_id: str, method: str, options: dict[str, Any]) -> str:
        """A key that changes whenever the fitted classifier would (the rows must be JSON-able)."""
        payload = json.dumps([self.name, encoder_id, method, options, rows], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8", errors="surrogatepass")).hexdigest()


# ------------------------------------------------------------------------------------ class rows
def class_rows(values: Sequence[Any]) -> list[tuple[str, Any]]:
    """The (name, items) of every class row, empty ones included, from names then items."""
    names, items = values[:MAX_CLASSES], values[MAX_CLASSES:2 * MAX_CLASSES]
    return [((name or "").strip(), item) for name, item in zip(names, items)]


def row_visibility(count: int) -> list[Any]:
    """Show the first ``count`` class rows."""
    return [gr.Row(visible=i < count) for i in range(MAX_CLASSES)]


def add_class(count: int) -> list[Any]:
    """Show one more class row: [count, *row visibility]."""
    if count >= MAX_CLASSES:
        raise UserInputError(f"at most {MAX_CLASSES} classes; remove one before adding another")
    return [count + 1, *row_visibility(count + 1)]


def remove_class(modality: SupportModality, position: int, count: int, *values: Any) -> list[Any]:
    """Remove the class row at ``position``; the rows below move up: [count, *names, *items, *visibility]."""
    names, items = list(values[:MAX_CLASSES]), list(values[MAX_CLASSES:2 * MAX_CLASSES])
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
    if len(classes) > MAX_CLASSES:
        raise UserInputError(
            f"{len(classes)} classes is more than the {MAX_CLASSES} this app fits at once; keep the "
            f"{MAX_CLASSES} you need most (the bench command handles any number of classes)"
        )
    count = max(len(classes), 2)
    padding = MAX_CLASSES - len(classes)
    names = [name for name, _ in classes] + [""] * padding
    items = [item for _, item in classes] + [modality.empty_item] * padding
    return [count, *names, *items, *row_visibility(count)]


def clear_all(modality: SupportModality, extra_values: Sequence[Any] = ()) -> list[Any]:
    """Forget the fitted classifier and empty every row: [session, *fill_rows, *extra_values]."""
    names, items = [""] * MAX_CLASSES, [modality.empty_item] * MAX_CLASSES
    return [None, INITIAL_CLASSES, *names, *items, *row_visibility(INITIAL_CLASSES), *extra_values]


# ------------------------------------------------------------------------------------ classify
@dataclass(frozen=True)
class Classified:
    """What a click on Classify shows.

    Attributes:
        session: the session after the click (fitted or reused classifier, the new queries).
        status: Markdown summary with warnings.
        probabilities: the first query's class probabilities (for a gr.Label).
        cards: HTML, one card per query.
        history: per-step support loss and accuracy of an adapting learner (MAML and friends), or None.
        truths: per query, its true class where known (an example set's folders, a typed label), else None.
        refit: True when this click fitted a new classifier (False: the previous fit was reused).
    """

    session: SupportSession
    status: str
    probabilities: dict[str, float]
    cards: str
    history: list[dict] | None
    truths: list[str | None] = dataclasses.field(default_factory=list)
    refit: bool = False


def classify(
    modality: SupportModality,
    encoder_id: str,
    method: str,
    options: dict[str, Any],
    query_value: Any,
    session: SupportSession | None,
    class_values: Sequence[Any],
    progress: ProgressFn = _no_progress,
) -> Classified:
    """Fit (or reuse) the classifier on the class rows and classify the queries.

    The fit is reused while the encoder, method, options and class rows are unchanged; a classifier
    loaded from a file is used while no class row has items.

    Args:
        modality: the tab's modality.
        encoder_id: the selected backbone or encoder.
        method: a registered method key.
        options: the method's options by name (see ``ui.common.method_options``).
        query_value: what ``modality.read_queries`` reads.
        session: the tab's session, or None.
        class_values: the class rows' names, then their items.
        progress: ``(fraction, message)`` callback.

    Raises:
        UserInputError: with what to fix.
    """
    rows = class_rows(class_values)
    queries = modality.read_queries(query_value)
    progress(0.1, f"loading the {modality.tuned}")
    encoder = modality.load_encoder(encoder_id)
    notes: list[str] = []
    refit = False
    if session is not None and session.loaded and not any(modality.has_items(item) for _, item in rows):
        notes.append(f"Classified with the loaded classifier ({modality.add_items_hint} to fit a new one).")
    else:
        key = modality.support_key(rows, encoder.id, method, options)
        if session is None or session.support_key != key:
            progress(0.2, "embedding the support set and fitting")
            session = modality.fit(rows, encoder, method, options, key,
                                   progress=lambda fraction, message: progress(0.2 + 0.6 * fraction, message))
            refit = True
        notes.extend(session.fit_notes)
    progress(0.85, f"classifying the {modality.query_noun}")
    classifier = session.classifier
    queries, truths = modality.with_truths(queries, classifier.class_names)
    predictions, features, query_notes = modality.predict(classifier, encoder, queries.items)
    notes.extend(queries.notes + query_notes)
    session = session.with_queries(queries.names, features, [classifier.class_names.index(p.label) for p in predictions])
    cards = prediction_cards_html(predictions, queries.names, queries.thumbnails, session.captions, session.thumbnails,
                                  truths=truths)
    history = getattr(classifier.learner, "history", None) or None
    summary = classify_summary(modality, classifier, encoder.id, len(predictions), history)
    checked = truth_summary(predictions, truths, queries.names, modality.truth_source)
    status = notes_markdown(summary + (f"\n\n{checked}" if checked else ""), notes)
    return Classified(session, status, predictions[0].probabilities, cards, history, truths, refit)


def classify_summary(modality: SupportModality, classifier: FewShotClassifier, encoder_id: str, n_query: int,
                     history: list[dict] | None) -> str:
    """The first lines of the status: what classified what, and how the adaptation went."""
    tuned = "" if classifier.consumes_features else (
        f" (probabilities from the fine-tuned {modality.tuned}; nearest examples on the frozen {modality.features_noun})"
    )
    summary = (
        f"**{n_query} quer{'y' if n_query == 1 else 'ies'} classified** with {classifier.spec.label} "
        f"(`{classifier.method}`) on `{encoder_id}` "
        f"({classifier.n_way} classes, {len(classifier.support_labels)} examples){tuned}."
    )
    if history:
        steps = ", ".join(f"{h['step']}: loss {h['support_loss']:.3f} / acc {h['support_accuracy']:.0%}" for h in history)
        summary += f"\n\nAdaptation on the support set, step by step: {steps}."
    losses = getattr(classifier.learner, "losses", None)
    if losses:
        summary += (f"\n\nFine-tuned for {len(losses)} step(s) on the support set: training loss {losses[0]:.3f} "
                    f"at the first step, {losses[-1]:.3f} at the last.")
    return summary


# ------------------------------------------------------------------------------------ self-check
def self_check(session: SupportSession | None, selected_encoder: str | None = None) -> tuple[str, dict, Any]:
    """Leave-one-out on the support set, its confusion table and the 2-D map with the last queries.

    Args:
        session: the tab's session.
        selected_encoder: unused; the text tab's API has always sent the selected encoder.

    Returns:
        (Markdown reading, {"headers", "data"} confusion table, matplotlib figure).
    """
    if session is None:
        raise UserInputError("classify once first (or load an example), then run the self-check")
    classifier = session.classifier
    check = classifier.self_check()
    text = self_check_markdown(check, classifier.class_names)
    if classifier.self_check_method != classifier.method:
        text = (
            f"_Checked with the `{classifier.self_check_method}` head on the frozen "
            f"{'features' if session.modality == 'image' else 'embeddings'}: "
            f"refitting `{classifier.method}` once per example would take minutes._\n\n" + text
        )
    figure = embedding_map_figure(
        classifier.embedding_map(session.query_features), classifier.support_labels.tolist(),
        classifier.class_names, list(session.query_labels),
    )
    headers = ["true \\ predicted", *classifier.class_names]
    return text, {"headers": headers, "data": confusion_table(check, classifier.class_names)}, figure


# ------------------------------------------------------------------------------------ save, export, load
def save_classifier(session: SupportSession | None) -> str:
    """Write the fitted classifier to a new temporary .safetensors file; return its path."""
    if session is None:
        raise UserInputError("fit a classifier first (press Classify), then save it")
    folder = Path(tempfile.mkdtemp(prefix="fewshot-"))
    return str(session.classifier.save(folder / f"fewshot-{session.modality}-classifier.safetensors"))


def save_snippet(session: SupportSession | None, saved: Any) -> list[Any]:
    """After a save: [Python that uses the saved file, the fit the panel now shows]."""
    path = next(iter(file_paths(saved)), None)
    if session is None or path is None:
        return [gr.skip(), gr.skip()]
    from fewshot_demo.core.export import text_snippet

    name = Path(path).name
    if session.modality == "text":
        code = text_snippet(name)
    else:
        code = (f'import fewshot_demo as fsd   # pip install fewshot-demo (this app\'s package)\n\n'
                f'classifier = fsd.load("{name}")   # checks the file; loads the {session.classifier.encoder_id} backbone\n'
                'for prediction in classifier.predict(["photo.jpg"]):\n'
                '    print(prediction.label, prediction.probabilities)\n')
    return [gr.Code(value=code, visible=True), session.fitted_at]


def export_onnx(modality: SupportModality, session: SupportSession | None) -> list[Any]:
    """/{modality}_export_onnx: [the export, what was checked, Python that runs it, the fit shown].

    An image classifier is one .onnx file; a text classifier a .zip of its .onnx file and tokenizer.
    The export is checked with onnxruntime on up to 8 of the support items: its probabilities are
    compared with the app's.

    Raises:
        UserInputError: nothing fitted, or a learner that cannot be exported (transductive; a fine-tuned
            text encoder), saying why.
    """
    from fewshot_demo.core import export
    if session is None:
        raise UserInputError("fit a classifier first (press Classify), then export it")
    classifier = session.classifier
    encoder = modality.load_encoder(classifier.encoder_id)
    folder = Path(tempfile.mkdtemp(prefix="fewshot-onnx-"))
    items = list(session.data.items[:8]) if session.data is not None else []
    if modality.name == "text":
        exported = export.export_text_onnx(classifier, encoder, folder / f"fewshot-{classifier.method}-text-onnx.zip")
        shape = (f"token ids and attention mask (one window of {exported.max_length} tokens; the app reads a "
                 f"longer text in several) in, (n, {classifier.n_way}) probabilities out, with its tokenizer")
        items = [text for text in items if len(encoder.tokenizer(text)["input_ids"]) <= exported.max_length]
    else:
        exported = export.export_image_onnx(classifier, encoder, folder / f"fewshot-{classifier.method}-classifier.onnx")
        shape = (f"a (n, 3, {exported.input_size}, {exported.input_size}) image tensor in, "
                 f"(n, {classifier.n_way}) probabilities out")
    message = (f"**Exported** {classifier.spec.label} on `{classifier.encoder_id}` ({classifier.n_way} classes) "
               f"to ONNX in {exported.seconds:.1f} s: {shape}.")
    if items:
        try:
            got = (export.onnx_text_probabilities(exported.path, items) if modality.name == "text"
                   else export.onnx_probabilities(exported.path, export.normalised_images(encoder, items)))
        except ImportError:
            message += " (Install onnxruntime to check it.)"
        else:
            features = encoder.embed(items)
            inputs = None if classifier.consumes_features else encoder.prepare(classifier.input_kind, items)
            predictions = classifier.predict(features, query_inputs=inputs)
            want = torch.tensor([[p.probabilities[name] for name in classifier.class_names] for p in predictions])
            difference = float((got - want).abs().max())
            message += (f" Checked with onnxruntime on {len(items)} of your examples: the largest difference from the "
                        f"app's probabilities is {difference:.1e}.")
    return [str(exported.path), message, gr.Code(value=exported.snippet(), visible=True), session.fitted_at]


def push_classifier(session: SupportSession | None, repo_id: str, token: str | None) -> str:
    """/{modality}_push: save the classifier and upload it to a Hub model repository; the status line.

    Raises:
        UserInputError: nothing fitted, a malformed repository id, offline (at once), or the Hub refusing.
    """
    from fewshot_demo.core.export import push_to_hub

    if session is None:
        raise UserInputError("fit a classifier first (press Classify), then push it")
    repo_id = (repo_id or "").strip()
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserInputError(f"name the repository as user/name (got {repo_id!r})")
    url = push_to_hub(save_classifier(session), repo_id, token)
    return f"**Pushed** to [{html.escape(repo_id)}]({url}). Load it with `fsd.load` after downloading it."


def load_classifier(modality: SupportModality, value: Any, encoder_id: str) -> list[Any]:
    """Load a saved classifier: [session, message, *fill_rows] (class names, no items).

    A cleared file input leaves everything as it is.
    """
    path = next(iter(file_paths(value)), None)
    if path is None:
        return [gr.skip()] * (2 + len(fill_rows(modality, [])))
    classifier = FewShotClassifier.load(path, expected_encoder_id=encoder_id)
    captions = tuple(f"{classifier.class_names[int(label)]} (saved example {i + 1})"
                     for i, label in enumerate(classifier.support_labels))
    session = SupportSession(modality.name, classifier, captions)
    message = (
        f"Loaded a `{classifier.method}` classifier on `{classifier.encoder_id}` with {classifier.n_way} classes: "
        + ", ".join(html.escape(n, quote=False) for n in classifier.class_names)
        + f". Add {modality.query_noun} and press Classify."
    )
    return [session, message, *fill_rows(modality, [(name, modality.empty_item) for name in classifier.class_names])]


# ------------------------------------------------------------------------------------ builders
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
        """Everything that shows a fit: the results and the panels."""
        return [*(self.results.components if self.results else []), *self.panels.fit_outputs]

    def stale_values(self, status: str) -> list[Any]:
        return [*(self.results.empty(status) if self.results else []), *self.panels.empty()]


def build_class_rows(modality: SupportModality) -> ClassRowsUI:
    """The class rows with their add/remove/clear buttons, inside the caller's column."""
    count = gr.State(INITIAL_CLASSES)
    rows, names, items, displays, removes, edits = [], [], [], [], [], []
    for index in range(MAX_CLASSES):
        with gr.Row(visible=index < INITIAL_CLASSES, elem_classes=["fs-class-row"]) as row:
            with gr.Column(scale=1, min_width=120):
                names.append(gr.Textbox(label=f"Class {index + 1}", placeholder="class name", max_length=60,
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
    return ClassRowsUI(count, rows, names, items, removes, add_button, clear_button, displays, edits)


def build_panels(onnx: str | None = None) -> PanelsUI:
    """The self-check (leave-one-out) and 2-D map panel, then the panel that takes the classifier
    elsewhere: save/load (.safetensors), an ONNX export (its button says ``onnx``; None: no export),
    Python to use it, the Hub."""
    shown_fit = gr.State(None)  # the fit the panels show (SupportSession.fitted_at), or None
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
                    load_status)


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
    """Wire the rows' buttons and the panels to the handlers above.

    Args:
        widget: the tab's widget.
        encoder: the backbone or encoder dropdown (a loaded classifier must match it).
        clear_outputs: the tab's other components that "Clear all" resets, to ``clear_values``.
        check_inputs: inputs the self-check receives after the session (the text tab's API sends
            the encoder).

    Returns:
        The events that change the class rows, for the tab to chain its own updates to.
    """
    modality, session, rows, panels = widget.modality, widget.session, widget.rows, widget.panels
    prefix = modality.name
    stale = widget.stale_outputs
    stale_values = widget.stale_values
    events = [rows.add_button.click(user_errors(add_class), rows.count, [rows.count, *rows.rows],
                                    api_name=f"{prefix}_add_class")]
    removed = []
    for position, button in enumerate(rows.removes):
        removed.append(button.click(
            user_errors(functools.partial(remove_class, modality, position)), [rows.count, *rows.values],
            rows.outputs, api_name=f"{prefix}_remove_class_0" if position == 0 else False,
        ))
    events.extend(removed)
    cleared = rows.clear_button.click(
        functools.partial(clear_all, modality, tuple(clear_values)), None,
        [session, *rows.outputs, *clear_outputs], api_name=f"{prefix}_clear",
    )
    cleared.then(lambda: [*stale_values(""), None], None, [*stale, panels.shown_fit], api_name=False)
    events.append(cleared)
    # A user's edit of the classes (and a removed class) makes everything shown about the last fit stale.
    edited = functools.partial(classes_edited, len(stale), widget_values=stale_values)
    gr.on([name.input for name in rows.names] + rows.edits, edited, session, stale, api_name=False,
          show_progress="hidden", trigger_mode="always_last")
    for event in removed:
        event.then(edited, session, stale, api_name=False, show_progress="hidden")

    panels.check_button.click(
        user_errors(self_check), [session, *check_inputs], [panels.check_text, panels.confusion, panels.map_plot],
        api_name=f"{prefix}_self_check",
    ).success(lambda s: [gr.Dataframe(visible=True), gr.Plot(visible=True), s.fitted_at], session,
              [panels.confusion, panels.map_plot, panels.shown_fit], api_name=False, show_progress="hidden")
    saved = panels.save_button.click(user_errors(save_classifier), session, panels.saved_file, api_name=f"{prefix}_save")
    saved.success(save_snippet, [session, panels.saved_file], [panels.code, panels.shown_fit], api_name=False)
    if panels.export_button is not None and panels.export_file is not None:
        export_outputs = [panels.export_file, panels.export_status, panels.code, panels.shown_fit]
        panels.export_button.click(
            errors_in_status(functools.partial(export_onnx, modality), len(export_outputs), 1),
            session, export_outputs, api_name=f"{prefix}_export_onnx", show_progress_on=[panels.export_status],
        )
    panels.hub_button.click(errors_in_status(push_classifier, 1, 0), [session, panels.hub_repo, panels.hub_token],
                            panels.hub_status, api_name=f"{prefix}_push")
    loaded = panels.load_file.upload(
        user_errors(functools.partial(load_classifier, modality)), [panels.load_file, encoder],
        [session, panels.load_status, *rows.outputs], api_name=f"{prefix}_load",
    )
    loaded.success(lambda: [*stale_values(""), None], None, [*stale, panels.shown_fit], api_name=False)
    events.append(loaded)
    for event in events:
        show_rows(widget, event)
    return events


def show_rows(widget: SupportSetUI, event: Any) -> None:
    """After an event that filled the class rows: their display components show the new items."""
    rows = widget.rows
    if rows.displays:
        event.then(lambda *items: widget.modality.display_values(items), rows.items, rows.displays, api_name=False,
                   show_progress="hidden")


def wire_classify(widget: SupportSetUI, event: Any) -> None:
    """After a Classify: clear the panels when they show an older fit than the session's."""
    panels = widget.panels
    outputs = [*panels.fit_outputs, panels.shown_fit]
    event.success(functools.partial(panels_after_fit, len(outputs), panels.empty), [widget.session, panels.shown_fit],
                  outputs, api_name=False, show_progress="hidden")
