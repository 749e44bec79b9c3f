"""The text few-shot tab: classes of example texts, a method, queries, and why each prediction."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from fewshot_demo.classifier import MAX_CLASSES
from fewshot_demo.methods import methods_for
from fewshot_demo.text.data import read_text_table, split_lines
from fewshot_demo.text.encoders import DEFAULT_ENCODER, ENCODERS, load_encoder
from fewshot_demo.text.task import (
    build_text_support,
    classify_texts,
    fit_text_classifier,
    load_text_classifier,
    parse_queries,
    support_fingerprint,
)
from fewshot_demo.ui.common import (
    confusion_table,
    embedding_map_figure,
    file_paths,
    prediction_cards_html,
    self_check_markdown,
    user_errors,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "text"
INITIAL_CLASSES = 3
#: Offered first, in this order; every other method that runs on the encoder follows.
MAIN_METHODS = ("linear", "protonet", "finetune")
CAPTION_CHARS = 70


#: The tab's default: the bundled encoder's last and middle layers (a few points more accurate than the
#: last layer alone on the README's text benchmarks, at the same cost).
DEFAULT_TEXT_ENCODER = f"{DEFAULT_ENCODER}:layers"


def method_choices(encoder_id: str = DEFAULT_TEXT_ENCODER) -> list[tuple[str, str]]:
    """(label, key) of every method that runs on the text encoder, the main ones first."""
    specs = methods_for("text", encoder_id)
    ordered = sorted(specs, key=lambda s: MAIN_METHODS.index(s.key) if s.key in MAIN_METHODS else len(MAIN_METHODS))
    return [(f"{s.label} ({s.family}{', transductive' if s.transductive else ''})", s.key) for s in ordered]


def encoder_choices() -> list[tuple[str, str]]:
    """(label, id) of every text encoder, with the bundled encoder's other poolings as their own choices."""
    choices = [(spec.label, spec.id) for spec in ENCODERS.values()]
    choices[1:1] = [
        ("all-MiniLM-L6-v2, last + middle layer (bundled, offline; most accurate)", DEFAULT_TEXT_ENCODER),
        ("all-MiniLM-L6-v2 with [CLS] pooling instead of the mean (bundled, offline)", f"{DEFAULT_ENCODER}:cls"),
    ]
    return choices


def list_example_sets() -> list[str]:
    """Names of the bundled example sets (folders with a support.csv)."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "support.csv").is_file())


def example_set(name: str) -> tuple[list[tuple[str, str]], str]:
    """Return ([(class name, examples one per line)], queries one per line) of a bundled set."""
    if name not in list_example_sets():
        raise ValueError(f"unknown example set {name!r}; choose one of {', '.join(list_example_sets())}")
    table = read_text_table(EXAMPLES_DIR / name / "support.csv")
    queries_file = EXAMPLES_DIR / name / "queries.txt"
    queries = queries_file.read_text(encoding="utf-8") if queries_file.is_file() else ""
    return _class_blocks(table.texts, table.labels), "\n".join(split_lines(queries))


def _class_blocks(texts: list[str], labels: list[str]) -> list[tuple[str, str]]:
    """Group texts by label into (name, one text per line) blocks; line breaks inside a text become spaces."""
    blocks: dict[str, list[str]] = {}
    for text, label in zip(texts, labels):
        blocks.setdefault(label, []).append(" ".join(text.split()))
    return [(name, "\n".join(lines)) for name, lines in blocks.items()]


def _caption(label: str, text: str) -> str:
    text = " ".join(text.split())
    return f"{label}: {text if len(text) <= CAPTION_CHARS else text[: CAPTION_CHARS - 1] + '…'}"


def _notes_markdown(summary: str, notes: list[str]) -> str:
    return summary + ("\n\n" + "\n".join(f"- ⚠️ {html.escape(n)}" for n in notes) if notes else "")


def build_text_tab() -> None:
    """Create the text tab's components and events inside the caller's Blocks/Tab context."""
    session = gr.State(None)  # this browser session's fitted classifier, captions and last queries
    visible_count = gr.State(INITIAL_CLASSES)

    gr.Markdown(
        "Name each class and type a few example texts, **one per line** (5-8 per class is plenty), "
        "or upload one CSV/TSV/JSONL file with `text` and `label` columns. Add query texts, one per "
        "line, and press **Classify**. Or load an example set."
    )
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                example_choice = gr.Dropdown(
                    choices=list_example_sets(), value=(list_example_sets() or [None])[0], label="Example set", scale=3
                )
                example_button = gr.Button("Load example and classify", scale=2, elem_id="text-load-example")
            rows, names, examples = [], [], []
            for index in range(MAX_CLASSES):
                with gr.Row(visible=index < INITIAL_CLASSES, equal_height=True) as row:
                    names.append(gr.Textbox(label=f"Class {index + 1}", placeholder="class name", scale=1, max_length=60))
                    examples.append(
                        gr.Textbox(label="Examples, one per line", lines=3, max_lines=12, scale=3,
                                   placeholder="one example text per line")
                    )
                rows.append(row)
            with gr.Row():
                add_button = gr.Button("+ Add class", size="sm")
                clear_button = gr.Button("Clear all", size="sm")
            upload = gr.File(
                label="...or upload a CSV, TSV or JSONL file with 'text' and 'label' columns (fills the classes)",
                file_types=[".csv", ".tsv", ".jsonl"], file_count="single", height=140,
            )
        with gr.Column(scale=2):
            encoder = gr.Dropdown(choices=encoder_choices(), value=DEFAULT_TEXT_ENCODER, label="Encoder")
            method = gr.Dropdown(choices=method_choices(), value="linear", label="Method")
            with gr.Row(visible=False) as finetune_settings:
                steps = gr.Slider(0, 60, value=0, step=1, label="Fine-tuning steps (0: automatic, 5-20 by support size)")
                loss = gr.Radio(
                    [("Contrastive pairs (SetFit-style)", "contrastive"), ("Plain cross-entropy", "cross_entropy")],
                    value="contrastive", label="Fine-tuning loss",
                )
            queries = gr.Textbox(label="Query texts, one per line", lines=6, max_lines=20, elem_id="text-queries")
            classify_button = gr.Button("Classify", variant="primary", elem_id="text-classify")

    status = gr.Markdown(elem_id="text-status")
    first_label = gr.Label(num_top_classes=5, label="First query")
    results = gr.HTML(elem_id="text-results")
    with gr.Accordion("Check the support set", open=True):
        check_button = gr.Button("Run self-check (leave-one-out) and map", size="sm")
        with gr.Row():
            with gr.Column():
                check_text = gr.Markdown()
                confusion = gr.Dataframe(label="Confusion (rows: true class, columns: predicted)", interactive=False)
            map_plot = gr.Plot(label="2-D map of the embeddings (PCA)")
    with gr.Accordion("Save or load the fitted classifier", open=False):
        with gr.Row():
            save_button = gr.Button("Save classifier", size="sm")
            saved_file = gr.File(label="Saved classifier (.safetensors)", interactive=False)
            load_file = gr.File(label="Load a saved classifier", file_count="single", file_types=[".safetensors"])
        load_status = gr.Markdown()

    class_inputs = names + examples

    def _visibility(count: int) -> list[Any]:
        return [gr.Row(visible=i < count) for i in range(MAX_CLASSES)]

    def _fill(blocks: list[tuple[str, str]]) -> list[Any]:
        """Class boxes for (name, examples) blocks: count, names, examples, row visibility."""
        if len(blocks) > MAX_CLASSES:
            raise ValueError(
                f"{len(blocks)} classes is more than the {MAX_CLASSES} this app fits at once; keep the "
                f"{MAX_CLASSES} you need most (the bench command handles any number of classes)"
            )
        count = max(len(blocks), 2)
        padded = blocks + [("", "")] * (MAX_CLASSES - len(blocks))
        return [count, *[n for n, _ in padded], *[e for _, e in padded], *_visibility(count)]

    # ---- class rows ---------------------------------------------------------------------------
    @user_errors
    def add_class(count: int):
        if count >= MAX_CLASSES:
            raise ValueError(f"at most {MAX_CLASSES} classes; clear one before adding another")
        return [count + 1, *_visibility(count + 1)]

    add_button.click(add_class, visible_count, [visible_count, *rows], api_name="text_add_class")

    def clear_all():
        return [None, INITIAL_CLASSES, *([""] * (2 * MAX_CLASSES)), *_visibility(INITIAL_CLASSES), "", "", None, "", None]

    clear_button.click(
        clear_all, None, [session, visible_count, *class_inputs, *rows, queries, status, first_label, results, upload],
        api_name="text_clear",
    )
    method.change(lambda m: gr.Row(visible=m == "finetune"), method, finetune_settings, api_name=False)

    @user_errors
    def upload_file(value: Any):
        path = next(iter(file_paths(value)), None)
        if path is None:  # the file was cleared: leave the classes as they are
            return [gr.skip()] * (1 + 3 * MAX_CLASSES + 1)
        table = read_text_table(path)
        blocks = _class_blocks(table.texts, table.labels)
        summary = f"**Read {len(table.texts)} examples in {len(blocks)} classes from {html.escape(Path(path).name)}.**"
        return [*_fill(blocks), _notes_markdown(summary, table.notes)]

    upload.upload(upload_file, upload, [visible_count, *class_inputs, *rows, status], api_name="text_upload")

    # ---- classify -------------------------------------------------------------------------------
    @user_errors
    def classify(encoder_id: str, method_name: str, n_steps: float, loss_name: str, query_block: str, state: dict | None,
                 *values: Any, progress: gr.Progress = gr.Progress()):
        query_texts = parse_queries(query_block)
        class_pairs = list(zip(values[:MAX_CLASSES], values[MAX_CLASSES:]))
        typed = any(split_lines(block) for _, block in class_pairs)
        progress(0.05, desc="loading the encoder")
        net = load_encoder(encoder_id)
        notes: list[str] = []
        options = {"steps": int(n_steps) or None, "loss": loss_name} if method_name == "finetune" else {}
        if typed or not (state and state.get("loaded")):
            table = build_text_support(class_pairs)
            notes.extend(table.notes)
            key = support_fingerprint(table, net.id, method_name, options)
            if state and state.get("fingerprint") == key:
                classifier = state["classifier"]  # same support, encoder and method: reuse the fit
                notes.extend(state.get("fit_notes", []))
            else:
                progress(0.2, desc="embedding the support set and fitting")
                classifier, fit_notes = fit_text_classifier(
                    table, net, method_name, options,
                    progress=lambda fraction, message: progress(0.2 + 0.6 * fraction, desc=message),
                )
                notes.extend(fit_notes)
                state = {
                    "classifier": classifier,
                    "fingerprint": key,
                    "fit_notes": fit_notes,
                    "captions": [_caption(l, t) for t, l in zip(table.texts, table.labels)],
                }
        else:
            classifier = state["classifier"]
            notes.append("Classified with the loaded classifier (type examples into the classes to fit a new one).")
        progress(0.85, desc="classifying the queries")
        predictions, query_notes = classify_texts(classifier, net, query_texts)
        notes.extend(query_notes)
        state = {**state, "queries": query_texts, "query_predictions": [classifier.class_names.index(p.label) for p in predictions]}
        cards = prediction_cards_html(predictions, query_texts, [None] * len(query_texts), state["captions"])
        extra = " (probabilities from the fine-tuned encoder; nearest examples on the frozen embeddings)" if method_name == "finetune" and not classifier.consumes_features else ""
        summary = (
            f"**{len(predictions)} quer{'y' if len(predictions) == 1 else 'ies'} classified** with "
            f"`{classifier.method}` on `{net.id}` ({classifier.n_way} classes, "
            f"{len(classifier.support_labels)} examples){extra}."
        )
        return state, _notes_markdown(summary, notes), predictions[0].probabilities, cards

    classify_inputs = [encoder, method, steps, loss, queries, session, *class_inputs]
    classify_outputs = [session, status, first_label, results]
    classify_button.click(classify, classify_inputs, classify_outputs, api_name="text_classify")

    # ---- example sets ---------------------------------------------------------------------------
    @user_errors
    def load_example(name: str):
        blocks, query_block = example_set(name)
        return [*_fill(blocks), query_block]

    example_button.click(
        load_example, example_choice, [visible_count, *class_inputs, *rows, queries], api_name="text_load_example"
    ).success(classify, classify_inputs, classify_outputs, api_name=False)

    # ---- self-check and map ---------------------------------------------------------------------
    @user_errors
    def self_check(state: dict | None, encoder_id: str):
        if not state or not state.get("classifier"):
            raise ValueError("classify once first (or load an example), then run the self-check")
        classifier = state["classifier"]
        check = classifier.self_check()
        text = self_check_markdown(check, classifier.class_names)
        if classifier.self_check_method != classifier.method:
            text = (
                f"_Checked with the `{classifier.self_check_method}` head on the frozen embeddings: refitting "
                f"the `{classifier.method}` encoder once per example would take minutes._\n\n" + text
            )
        query_features = None
        if state.get("queries") and classifier.encoder_id == encoder_id:
            query_features = load_encoder(encoder_id).embed(state["queries"])  # cached: no new forward pass
        coordinates = classifier.embedding_map(query_features)
        figure = embedding_map_figure(
            coordinates, classifier.support_labels.tolist(), classifier.class_names,
            state.get("query_predictions", []) if query_features is not None else [],
        )
        headers = ["true \\ predicted", *classifier.class_names]
        return text, {"headers": headers, "data": confusion_table(check, classifier.class_names)}, figure

    check_button.click(self_check, [session, encoder], [check_text, confusion, map_plot], api_name="text_self_check")

    # ---- save and load --------------------------------------------------------------------------
    @user_errors
    def save(state: dict | None):
        if not state or not state.get("classifier"):
            raise ValueError("fit a classifier first (press Classify), then save it")
        folder = Path(tempfile.mkdtemp(prefix="fewshot-"))
        return str(state["classifier"].save(folder / "fewshot-text-classifier.safetensors"))

    save_button.click(save, session, saved_file, api_name="text_save")

    @user_errors
    def load(value: Any, encoder_id: str):
        path = next(iter(file_paths(value)), None)
        if path is None:
            return [gr.skip()] * (3 + 3 * MAX_CLASSES)
        classifier = load_text_classifier(path, encoder_id)
        state = {
            "classifier": classifier,
            "loaded": True,
            "captions": [
                f"{classifier.class_names[int(label)]} (saved example {i + 1})"
                for i, label in enumerate(classifier.support_labels)
            ],
        }
        message = (
            f"Loaded a `{classifier.method}` classifier on `{classifier.encoder_id}` with {classifier.n_way} classes: "
            + ", ".join(html.escape(n) for n in classifier.class_names) + ". Add query texts and press Classify."
        )
        return [state, message, *_fill([(name, "") for name in classifier.class_names])]

    load_file.upload(
        load, [load_file, encoder], [session, load_status, visible_count, *class_inputs, *rows], api_name="text_load"
    )
