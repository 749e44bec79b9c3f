"""The text few-shot tab: classes of example texts, a method, queries, and why each prediction.

The class rows, self-check and the export panel come from ``ui.support``; this module says what a
text class row holds (``TextModality``: example texts one per line, with a count) and adds the
text-only parts: the CSV/TSV/JSONL upload, the encoder, the fine-tune settings, the one-click example
sets (``ui.text_examples``), and queries that may name their true class (``text | class``).
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core.classifier import FewShotClassifier, Prediction
from fewshot_demo.core.export import (
    OnnxExport,
    export_text_onnx,
    onnx_text_probabilities,
)
from fewshot_demo.core.sharing import text_snippet
from fewshot_demo.core.text_task import (
    build_text_support,
    classify_texts,
    fit_text_classifier,
    parse_queries,
    support_fingerprint,
)
from fewshot_demo.data.labelled import data_from_items
from fewshot_demo.data.texts import read_text_table, split_lines
from fewshot_demo.encoders.registry import default_encoder, default_method
from fewshot_demo.encoders.text import (
    BUNDLED_ENCODER,
    ENCODERS,
    TextEncoder,
    load_encoder,
)
from fewshot_demo.methods import get_method
from fewshot_demo.methods.text_tuning import FinetuneConfig
from fewshot_demo.ui.cards import known_truths
from fewshot_demo.ui.events import CLASSIFY, on
from fewshot_demo.ui.messages import notes_markdown
from fewshot_demo.ui.methods import method_choices as registry_choices
from fewshot_demo.ui.methods import (
    offer_methods,
    option_choices,
    option_field,
    option_slider,
    takes_options,
)
from fewshot_demo.ui.style import page_style
from fewshot_demo.ui.support.classify import classify as classify_support
from fewshot_demo.ui.support.modality import ProgressFn, Queries, SupportModality, SupportSession
from fewshot_demo.ui.support.project import ProjectControls, wire_project
from fewshot_demo.ui.support.rows import fill_rows
from fewshot_demo.ui.support.widgets import (
    ResultsUI,
    SupportSetUI,
    build_class_rows,
    build_panels,
)
from fewshot_demo.ui.support.wiring import wire_classify, wire_suggestions, wire_support_set
from fewshot_demo.ui.text_examples import (
    class_blocks,
    example_caption,
    example_set,
    list_example_sets,
)
from fewshot_demo.ui.values import file_paths

#: Offered first, in this order; every other method that runs on the encoder follows.
MAIN_METHODS = ("linear", "protonet", "finetune")
CAPTION_CHARS = 70
#: How the fine-tune losses are shown.
LOSS_LABELS = {"contrastive": "Contrastive pairs (SetFit-style)", "cross_entropy": "Plain cross-entropy"}
#: The tab's default: the bundled encoder's last and middle layers (a few points more accurate than the
#: last layer alone on the README's text benchmarks, at the same cost).
DEFAULT_TEXT_ENCODER = default_encoder("text")
INTRO = ("Name each class and type a few example texts, **one per line** (5-8 per class is plenty), "
         "or upload one CSV/TSV/JSONL file with `text` and `label` columns. Add query texts, one per "
         "line, and press **Classify**. Or click an example set.")
#: Shown before a comparison on texts with a method that trains the encoder on every episode.
TUNING_WARNING = ("Text fine-tuning trains the encoder on every episode: seconds per episode for short texts, "
                  "about 30 s for long ones on a CPU. Lower the episodes, or press Stop to keep what has finished.")


def method_choices(encoder_id: str = DEFAULT_TEXT_ENCODER) -> list[tuple[str, str]]:
    """(label, key) of every method that runs on the text encoder, the main ones first."""
    return registry_choices("text", encoder_id, MAIN_METHODS)


def method_options(method: str, steps: float, loss: str) -> dict[str, Any]:
    """The settings that apply to the method (those of its options class), as its option values (0 steps: automatic)."""
    if takes_options(method, "text", FinetuneConfig):
        return {"steps": int(steps) or None, "loss": loss}
    return {}


def finetune_visibility(method: str) -> Any:
    """Show the fine-tune settings for the methods they apply to."""
    return gr.Group(visible=takes_options(method, "text", FinetuneConfig))


def encoder_choices() -> list[tuple[str, str]]:
    """(label, id) of every text encoder, with the bundled encoder's other poolings as their own choices."""
    choices = [(spec.label, spec.id) for spec in ENCODERS.values()]
    choices[1:1] = [
        ("all-MiniLM-L6-v2, last + middle layer (bundled, offline; most accurate)", f"{BUNDLED_ENCODER}:layers"),
        ("all-MiniLM-L6-v2 with [CLS] pooling instead of the mean (bundled, offline)", f"{BUNDLED_ENCODER}:cls"),
    ]
    # FEWSHOT_DEFAULT_TEXT_ENCODER may name a pooling of a hub encoder that is not listed above
    if DEFAULT_TEXT_ENCODER not in {encoder_id for _, encoder_id in choices}:
        choices.insert(0, (DEFAULT_TEXT_ENCODER, DEFAULT_TEXT_ENCODER))
    return choices


def text_count_label(block: str | None) -> str:
    """A class row's text box label: how many examples it holds."""
    count = len(split_lines(block))
    return "Examples, one per line" + (f": {count}" if count else "")


def split_truth(line: str) -> tuple[str, str | None]:
    """Split ``"text | class"`` (or ``"text<TAB>class"``, as pasted from two spreadsheet columns) into
    the text and the class it names; a line without either is (line, None)."""
    for separator in ("\t", " | "):
        text, found, label = line.rpartition(separator)
        if found and text.strip() and label.strip():
            return text.strip(), label.strip()
    return line, None


def _caption(label: str, text: str) -> str:
    text = " ".join(text.split())
    return f"{label}: {text if len(text) <= CAPTION_CHARS else text[: CAPTION_CHARS - 1] + '…'}"


class TextModality(SupportModality):
    """Class rows of example texts, one per line; queries are one per line."""

    name = "text"
    empty_item = ""
    query_noun = "query texts"
    tuned = "encoder"
    features_noun = "embeddings"
    add_items_hint = "type examples into the classes"
    truth_source = "the \"| class\" after each query"

    def item_box(self) -> gr.Component:
        return gr.Textbox(label=text_count_label(""), lines=3, max_lines=8, scale=3,
                          placeholder="one example text per line", elem_classes=["fs-class-texts"])

    def wire_row(self, item: gr.Component, display: gr.Component | None) -> list[Any]:
        on(item.change, lambda block: gr.Textbox(label=text_count_label(block)), item, item, show_progress="hidden",
           queue=False, trigger_mode="always_last")
        return [item.input]

    def with_truths(self, queries: Queries, class_names: Sequence[str]) -> tuple[Queries, list[str | None]]:
        """A query line ``text | class`` (or with a tab) names its true class when ``class`` is one of
        the classes; the text alone is classified. Other lines are classified as they are."""
        known = {name.casefold() for name in class_names}
        texts, hints = [], []
        for line in queries.items:
            text, label = split_truth(line)
            if label is not None and label.casefold() in known:
                texts.append(text)
                hints.append(label)
            else:
                texts.append(line)
                hints.append(None)
        return Queries(texts, texts, [None] * len(texts), queries.notes), known_truths(hints, class_names)

    def has_items(self, item: Any) -> bool:
        return bool(split_lines(item))

    def load_encoder(self, encoder_id: str) -> TextEncoder:
        return load_encoder(encoder_id)

    def support_key(self, rows: list[tuple[str, Any]], encoder_id: str, method: str, options: dict[str, Any]) -> str:
        # On the parsed texts: blank lines or spaces around a text do not refit a fine-tune.
        return support_fingerprint(build_text_support(rows), encoder_id, method, options)

    def fit(self, rows: list[tuple[str, Any]], encoder: TextEncoder, method: str, options: dict[str, Any], key: str,
            progress: ProgressFn) -> SupportSession:
        table = build_text_support(rows)
        classifier, fit_notes = fit_text_classifier(table, encoder, method, options, progress=progress)
        return SupportSession(
            modality=self,
            classifier=classifier,
            captions=tuple(_caption(label, text) for text, label in zip(table.texts, table.labels)),
            support_key=key,
            fit_notes=tuple(table.notes + fit_notes),
            data=data_from_items(self.name, table.texts, table.labels),
        )

    def read_queries(self, value: str | None) -> Queries:
        texts = parse_queries(value)
        return Queries(texts, texts, [None] * len(texts))

    def predict(self, classifier: FewShotClassifier, encoder: TextEncoder,
                items: list[Any]) -> tuple[list[Prediction], Tensor, list[str]]:
        predictions, notes = classify_texts(classifier, encoder, items)
        # The texts classify_texts embedded (cut to the text limit): their embeddings are cached.
        return predictions, encoder.embed([text[:limits().max_text_chars] for text in items]), notes

    def saved_snippet(self, file_name: str, classifier: FewShotClassifier) -> str:
        return text_snippet(file_name)

    def export_onnx(self, classifier: FewShotClassifier, encoder: TextEncoder, folder: Path,
                    items: Sequence[Any]) -> tuple[OnnxExport, str, list[Any]]:
        exported = export_text_onnx(classifier, encoder, folder / f"fewshot-{classifier.method}-text-onnx.zip")
        shape = (f"token ids and attention mask (one window of {exported.max_length} tokens; the app reads a "
                 f"longer text in several) in, (n, {classifier.n_way}) probabilities out, with its tokenizer")
        # Only texts within one window: the graph reads a longer text's first window, the app all of them.
        fitting = [text for text in items if len(encoder.tokenizer(text)["input_ids"]) <= exported.max_length]
        return exported, shape, fitting

    def onnx_probabilities(self, exported: OnnxExport, encoder: TextEncoder, items: Sequence[Any]) -> Tensor:
        return onnx_text_probabilities(exported.path, list(items))

    def episode_warning(self, methods: Sequence[str]) -> str | None:
        """A method that consumes token ids rather than frozen embeddings trains the encoder on every episode."""
        if any(get_method(method).input_kind(self.name) != "features" for method in methods):
            return TUNING_WARNING
        return None

    def mistakes_view(self, mistakes: Sequence[tuple[Any, str, str, int]]) -> list[Any]:
        lines = [f"- **{true} -> {predicted}** ({n}x): {str(item)[:160]!r}" for item, true, predicted, n in mistakes]
        return [gr.Gallery(visible=False), gr.Markdown(value="\n".join(lines) or "No mistakes.", visible=True)]


TEXT = TextModality()


# ------------------------------------------------------------------------------------ handlers
def classify(encoder_id: str, method: str, steps: float, loss: str, queries: str | None,
             session: SupportSession | None, *class_values: Any, progress: Any = gr.Progress()) -> list[Any]:
    """/text_classify: fit (or reuse) and classify; [session, status, first label, cards].

    ``class_values`` are the class rows' names, then their example blocks.
    """
    result = classify_support(
        TEXT, encoder_id, method, method_options(method, steps, loss), queries, session, class_values,
        progress=lambda fraction, message: progress(fraction, desc=message),
    )
    return [result.session, result.status, result.probabilities, result.cards]


def load_example(name: str) -> list[Any]:
    """/text_load_example: the class rows and queries of a bundled example set."""
    blocks, queries = example_set(name)
    return [*fill_rows(TEXT, blocks), queries]


def load_example_card(index: int) -> list[Any]:
    """An example card's click: what ``load_example`` returns for the card's set."""
    sets = list_example_sets()
    if index is None or not 0 <= int(index) < len(sets):
        raise UserInputError("pick one of the example sets")
    return load_example(sets[int(index)])


def upload_classes(value: Any) -> list[Any]:
    """/text_upload: fill the class rows from a CSV/TSV/JSONL file; [*fill_rows, status].

    A cleared file input leaves the classes as they are.
    """
    path = next(iter(file_paths(value)), None)
    if path is None:
        return [gr.skip()] * (len(fill_rows(TEXT, [])) + 1)
    table = read_text_table(path)
    blocks = class_blocks(table.texts, table.labels)
    summary = f"**Read {len(table.texts)} examples in {len(blocks)} classes from {html.escape(Path(path).name)}.**"
    return [*fill_rows(TEXT, blocks), notes_markdown(summary, table.notes)]


# ------------------------------------------------------------------------------------ builders
@dataclass
class ControlsUI:
    """The column beside the class rows: encoder, method and its settings, queries, Classify."""

    encoder: gr.Dropdown
    method: gr.Dropdown
    finetune: gr.Group
    steps: gr.Slider
    loss: gr.Radio
    queries: gr.Textbox
    classify_button: gr.Button


def build_controls() -> ControlsUI:
    """The encoder, the method with the fine-tune settings, the queries and Classify."""
    encoder = gr.Dropdown(choices=encoder_choices(), value=DEFAULT_TEXT_ENCODER, label="Encoder", elem_id="text-encoder")
    method = gr.Dropdown(choices=method_choices(), value=default_method("text"), label="Method", elem_id="text-method")
    with gr.Group(visible=False, elem_id="text-finetune") as finetune:
        steps = option_slider(FinetuneConfig, "steps", 0, 1, "Fine-tuning steps (0: automatic, 5-20 by support size)")
        loss = gr.Radio(option_choices(FinetuneConfig, "loss", LOSS_LABELS),
                        value=option_field(FinetuneConfig, "loss").default, label="Fine-tuning loss")
    queries = gr.Textbox(label="Query texts, one per line", lines=6, max_lines=20, elem_id="text-queries",
                         info="End a line with \" | class\" to have it marked right or wrong.",
                         placeholder="Will it rain tomorrow? | weather")
    classify_button = gr.Button("Classify", variant="primary", elem_id="text-classify")
    return ControlsUI(encoder, method, finetune, steps, loss, queries, classify_button)


def build_text_tab() -> SupportSetUI:
    """Create the text tab's components and events inside the caller's Blocks/Tab context.

    Returns:
        The tab's support-set widget; its ``session`` holds the fitted classifier and the classes
        (the comparison tab offers them as a data set).
    """
    page_style()
    session = gr.State(None)  # this browser session's SupportSession
    gr.Markdown(INTRO)
    sets = list_example_sets()
    example_cards = gr.Dataset(
        components=[gr.Textbox(visible=False)], samples=[[example_caption(name)] for name in sets],
        label="Example sets: one click loads a set and classifies its queries", type="index", layout="table",
        elem_id="text-examples",
    )
    # The API's way to load an example by name (the cards above are the page's way).
    with gr.Row(visible=False):
        example_choice = gr.Dropdown(choices=sets, value=(sets or [None])[0], label="Example set")
        example_button = gr.Button("Load example and classify", elem_id="text-load-example")
    with gr.Row():
        with gr.Column(scale=3):
            rows = build_class_rows(TEXT)
            upload = gr.File(
                label="...or upload a CSV, TSV or JSONL file with 'text' and 'label' columns (fills the classes)",
                file_types=[".csv", ".tsv", ".jsonl"], file_count="single", height=140,
            )
        with gr.Column(scale=2, min_width=260):
            controls = build_controls()
    status = gr.Markdown(elem_id="text-status", elem_classes=["fs-status"])
    first_label = gr.Label(num_top_classes=5, label="First query")
    cards = gr.HTML(elem_id="text-results")
    widget = SupportSetUI(TEXT, session, rows,
                          build_panels(onnx="Export to ONNX (encoder + head, with its tokenizer)"),
                          ResultsUI(status, first_label, cards))

    wire_support_set(widget, controls.encoder, clear_outputs=[controls.queries, upload], clear_values=["", None],
                     check_inputs=[controls.encoder])
    on(controls.method.change, finetune_visibility, controls.method, controls.finetune)
    on(controls.encoder.change, functools.partial(offer_methods, method_choices, default_method("text")),
       [controls.encoder, controls.method], controls.method)
    uploaded = on(upload.upload, upload_classes, upload, [*rows.outputs, status], api="text_upload")
    # The status keeps what was read; everything else that showed the last fit is cleared.
    on(uploaded.success, lambda: widget.stale_values("")[1:], None, widget.stale_outputs[1:])
    wire_suggestions(widget, controls.queries, lambda trigger: wire_classify_button(controls, widget, trigger))
    wire_classify_button(controls, widget, controls.classify_button.click, api="text_classify")
    wire_project(widget, project_controls(controls))
    for loader, api, source, trigger in ((load_example, "text_load_example", example_choice, example_button.click),
                                         (load_example_card, None, example_cards, example_cards.click)):
        loaded = on(trigger, loader, source, [*rows.outputs, controls.queries], api=api)
        cleared = on(loaded.success, lambda: widget.stale_values(""), None, widget.stale_outputs,
                     show_progress="hidden")
        wire_classify_button(controls, widget, cleared.success)
    return widget


def project_settings(options: dict[str, Any]) -> list[Any]:
    """A project's options as the fine-tune settings' values (steps, 0 for automatic; loss)."""
    steps = (options.get("steps") or 0) if "steps" in options else gr.skip()
    return [steps, options.get("loss", gr.skip())]


def project_controls(controls: ControlsUI) -> ProjectControls:
    """What a text project holds beyond the class rows: encoder, method, fine-tune settings, query texts."""
    return ProjectControls(controls.encoder, controls.method, [controls.steps, controls.loss], [controls.queries],
                           method_options, project_settings, lambda text: (text or "").splitlines(),
                           lambda lines: ["\n".join(lines)], split_lines, "\n".join)


def wire_classify_button(controls: ControlsUI, widget: SupportSetUI, trigger: Any, api: str | None = None) -> Any:
    """A Classify (the button's, or after an example loads): fit or reuse, classify, show why."""
    results = widget.results
    event = on(trigger, classify,
               [controls.encoder, controls.method, controls.steps, controls.loss, controls.queries, widget.session,
                *widget.rows.values], [widget.session, *results.components], api=api, group=CLASSIFY,
               errors=results.status_line(offset=1), show_progress_on=[results.status])
    wire_classify(widget, event)
    return event
