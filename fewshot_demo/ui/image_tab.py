"""The image few-shot tab: classes of uploaded images, a method, queries, and why each prediction."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from fewshot_demo.backbones import BACKBONES, DEFAULT_BACKBONE, load_backbone
from fewshot_demo.classifier import MAX_CLASSES, FewShotClassifier
from fewshot_demo.data.image_folder import list_image_folder
from fewshot_demo.image_task import (
    MAX_QUERY_IMAGES,
    build_support,
    classify_images,
    fit_image_classifier,
    load_images,
)
from fewshot_demo.methods import get_method, methods_for
from fewshot_demo.ui.compare_tab import tab_data
from fewshot_demo.ui.common import (
    adaptation_figure,
    confusion_table,
    embedding_map_figure,
    file_paths,
    prediction_cards_html,
    self_check_markdown,
    thumbnail_data_uri,
    user_errors,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "images"
INITIAL_CLASSES = 3
#: Offered first, in this order; every other method that runs on the backbone follows.
MAIN_METHODS = ("protonet", "maml", "linear")


def list_example_sets() -> list[str]:
    """Names of the bundled example sets (folders with a support/ sub-folder)."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "support").is_dir())


def example_set(name: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Return ([(class name, support image paths)], query image paths) of a bundled example set."""
    if name not in list_example_sets():
        raise ValueError(f"unknown example set {name!r}; choose one of {', '.join(list_example_sets())}")
    support = list_image_folder(EXAMPLES_DIR / name / "support")
    classes: dict[str, list[str]] = {}
    for path, label in zip(support.paths, support.labels):
        classes.setdefault(label, []).append(str(path))
    query_dir = EXAMPLES_DIR / name / "query"
    queries = [str(p) for p in list_image_folder(query_dir).paths] if query_dir.is_dir() else []
    return list(classes.items()), queries


def method_choices(backbone_id: str = DEFAULT_BACKBONE) -> list[tuple[str, str]]:
    """(label, key) of every method that runs on the backbone, the main ones first."""
    specs = methods_for("image", backbone_id)
    ordered = sorted(specs, key=lambda s: MAIN_METHODS.index(s.key) if s.key in MAIN_METHODS else len(MAIN_METHODS))
    return [(f"{s.label} ({s.family}{', transductive' if s.transductive else ''})", s.key) for s in ordered]


def adapts_by_steps(method: str) -> bool:
    """True for methods with MAML-style adaptation options (steps and step size)."""
    return any(f.name == "inner_steps" for f in get_method(method).option_fields("image"))


def build_image_tab(shared_data: gr.State | None = None) -> None:
    """Create the image tab's components and events inside the caller's Blocks/Tab context.

    Args:
        shared_data: optional State that receives the fitted support set (as
            ``compare_tab.tab_data``), so the comparison tab can run episodes on the user's classes.
    """
    session = gr.State(None)  # this browser session's fitted classifier and support thumbnails
    visible_count = gr.State(INITIAL_CLASSES)

    gr.Markdown(
        "Give each class a name and a few images (5 is plenty), pick a method, add query images and "
        "press **Classify**. Or load an example set."
    )
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                example_choice = gr.Dropdown(
                    choices=list_example_sets(), value=(list_example_sets() or [None])[0],
                    label="Example set", scale=3,
                )
                example_button = gr.Button("Load example and classify", scale=2, elem_id="load-example")
            rows, names, files, removes = [], [], [], []
            for index in range(MAX_CLASSES):
                with gr.Row(visible=index < INITIAL_CLASSES, equal_height=True) as row:
                    names.append(gr.Textbox(label=f"Class {index + 1}", placeholder="class name", scale=1, max_length=60))
                    files.append(gr.File(label="Images", file_count="multiple", scale=3, height=110))
                    removes.append(gr.Button("Remove", size="sm", scale=0, min_width=70))
                rows.append(row)
            with gr.Row():
                add_button = gr.Button("+ Add class", size="sm")
                clear_button = gr.Button("Clear all", size="sm")
            with gr.Accordion("Add an image from the webcam or clipboard", open=False):
                with gr.Row():
                    capture = gr.Image(
                        sources=["webcam", "clipboard", "upload"], type="filepath", image_mode=None,
                        label="Capture", height=200,
                    )
                    with gr.Column():
                        capture_target = gr.Dropdown(
                            choices=[(f"Class {i + 1}", i) for i in range(INITIAL_CLASSES)], value=0, label="Add to"
                        )
                        capture_button = gr.Button("Add to class")
        with gr.Column(scale=2):
            backbone = gr.Dropdown(
                choices=[(spec.label, spec.id) for spec in BACKBONES.values() if spec.id != "pixels28"],
                value=DEFAULT_BACKBONE, label="Backbone",
            )
            method = gr.Dropdown(choices=method_choices(), value="protonet", label="Method")
            with gr.Group(visible=False) as adaptation_settings:
                inner_steps = gr.Slider(0, 50, value=5, step=1, label="Adaptation steps on the support set")
                learned_lr = gr.Checkbox(value=True, label="Use the meta-learned step sizes")
                inner_lr = gr.Slider(0.001, 2.0, value=0.5, step=0.001, label="Step size (when not meta-learned)")
            query_files = gr.File(label="Query images", file_count="multiple", height=120)
            query_capture = gr.Image(
                sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None,
                label="...or one query from the webcam or clipboard", height=160,
            )
            classify_button = gr.Button("Classify", variant="primary", elem_id="classify")

    status = gr.Markdown(elem_id="image-status")
    with gr.Row():
        first_label = gr.Label(num_top_classes=5, label="First query", scale=1)
        adaptation_plot = gr.Plot(label="Adaptation", visible=False, scale=1)
    results = gr.HTML(elem_id="image-results")
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
            load_file = gr.File(label="Load a saved classifier", file_count="single")
        load_status = gr.Markdown()

    class_inputs = names + files

    def _classes_from(values: list[Any]) -> list[tuple[str, list[str]]]:
        """(name, files) of every class row with a name or files; empty rows are not classes."""
        class_names, class_files = values[:MAX_CLASSES], values[MAX_CLASSES:]
        rows = [((class_names[i] or "").strip(), file_paths(class_files[i])) for i in range(MAX_CLASSES)]
        return [(name, paths) for name, paths in rows if name or paths]

    def _visibility(count: int) -> list[Any]:
        return [gr.Row(visible=i < count) for i in range(MAX_CLASSES)]

    def _target_choices(count: int, class_names: list[str]) -> Any:
        return gr.Dropdown(choices=[(class_names[i] or f"Class {i + 1}", i) for i in range(count)], value=0)

    # ---- class rows: add, remove, clear ----------------------------------------------------
    @user_errors
    def add_class(count: int, *values: Any):
        if count >= MAX_CLASSES:
            raise ValueError(f"at most {MAX_CLASSES} classes; remove one before adding another")
        count += 1
        return [count, *_visibility(count), _target_choices(count, list(values[:MAX_CLASSES]))]

    add_button.click(add_class, [visible_count, *names], [visible_count, *rows, capture_target], api_name="image_add_class")

    def make_remove(position: int):
        @user_errors
        def remove_class(count: int, *values: Any):
            class_names, class_files = list(values[:MAX_CLASSES]), list(values[MAX_CLASSES:])
            if position >= count:
                return [count, *class_names, *class_files, *_visibility(count), _target_choices(count, class_names)]
            del class_names[position], class_files[position]
            class_names.append("")
            class_files.append(None)
            count = max(count - 1, 1)
            return [count, *class_names, *class_files, *_visibility(count), _target_choices(count, class_names)]

        return remove_class

    for position, button in enumerate(removes):
        button.click(
            make_remove(position), [visible_count, *class_inputs],
            [visible_count, *class_inputs, *rows, capture_target], api_name=f"image_remove_class_{position}" if position == 0 else False,
        )

    def clear_all():
        return [INITIAL_CLASSES, *([""] * MAX_CLASSES), *([None] * MAX_CLASSES), *_visibility(INITIAL_CLASSES), None, None, "", None, ""]

    clear_button.click(
        clear_all, None, [visible_count, *class_inputs, *rows, query_files, query_capture, status, first_label, results],
        api_name=False,
    )

    for name_box in names:
        name_box.blur(lambda count, *values: _target_choices(count, list(values)), [visible_count, *names], capture_target, api_name=False)

    @user_errors
    def add_capture(image_path: str | None, target: int | None, count: int, *values: Any):
        if not image_path:
            raise ValueError("take or paste a picture first, then press 'Add to class'")
        target = int(target or 0)
        if target >= count:
            raise ValueError("choose one of the visible classes to add the picture to")
        class_files = list(values)
        class_files[target] = file_paths(class_files[target]) + [image_path]
        return [*class_files, None]

    capture_button.click(add_capture, [capture, capture_target, visible_count, *files], [*files, capture], api_name=False)

    method.change(lambda m: gr.Group(visible=adapts_by_steps(m)), method, adaptation_settings, api_name=False)
    def offer_methods(backbone_id: str, current: str):
        choices = method_choices(backbone_id)
        return gr.Dropdown(choices=choices, value=current if current in [key for _, key in choices] else "linear")

    backbone.change(offer_methods, [backbone, method], method, api_name=False)

    # ---- classify ---------------------------------------------------------------------------
    @user_errors
    def classify(backbone_id: str, method_name: str, steps: float, use_learned_lr: bool, lr: float,
                 queries: Any, captured: str | None, state: dict | None, *values: Any,
                 progress: gr.Progress = gr.Progress()):
        classes = _classes_from(list(values))
        query_paths = file_paths(queries) + ([captured] if captured else [])
        if not query_paths:
            raise ValueError("add at least one query image (upload, webcam or clipboard), then press Classify")
        shared = gr.skip()
        progress(0.1, desc="loading the backbone")
        net = load_backbone(backbone_id)
        notes: list[str] = []
        options = {}
        if adapts_by_steps(method_name):
            options = {"inner_steps": int(steps), "inner_lr": None if use_learned_lr else float(lr)}
        # The same classes, files and settings as the last click: reuse the fitted classifier.
        support_key = repr((backbone_id, method_name, sorted(options.items()), classes))
        if state and state.get("support_key") == support_key:
            classifier = state["classifier"]
            notes.extend(state.get("support_warnings", []))
        elif any(class_files for _, class_files in classes) or not (state and state.get("classifier")):
            progress(0.3, desc="embedding the support set")
            support = build_support(classes)
            notes.extend(support.warnings)
            classifier = fit_image_classifier(
                support, net, method_name, options,
                progress=lambda fraction, message: progress(0.4 + 0.3 * fraction, desc=message),
            )
            if shared_data is not None:
                shared = tab_data("image", support.images, [support.class_names[int(l)] for l in support.labels])
            state = {
                "classifier": classifier,
                "support_key": support_key,
                "support_warnings": support.warnings,
                "captions": [f"{support.class_names[int(l)]}: {s}" for l, s in zip(support.labels, support.sources)],
                "thumbnails": [thumbnail_data_uri(img, 72) for img in support.images],
            }
        else:
            classifier = state["classifier"]
            notes.append("classified with the loaded classifier (add images to the classes to fit a new one)")
        progress(0.7, desc="classifying the queries")
        images, query_names, skipped = load_images(query_paths, MAX_QUERY_IMAGES, "queries")
        notes.extend(skipped)
        if not images:
            raise ValueError("none of the query files is a usable image; " + "; ".join(skipped))
        predictions = classify_images(classifier, net, images)
        state = {**state, "query_features": net.embed(images),  # cached: no second forward pass
                 "query_labels": [classifier.class_names.index(p.label) for p in predictions]}
        html = prediction_cards_html(
            predictions, query_names, [thumbnail_data_uri(img) for img in images],
            state["captions"], state.get("thumbnails"),
        )
        history = getattr(classifier.learner, "history", None)
        plot = gr.Plot(value=adaptation_figure(history), visible=True) if history else gr.Plot(visible=False)
        summary = f"**{len(predictions)} quer{'y' if len(predictions) == 1 else 'ies'} classified** with `{classifier.method}` on `{net.id}` ({classifier.n_way} classes, {len(classifier.support_labels)} examples)."
        if history:
            steps_text = ", ".join(
                f"{h['step']}: loss {h['support_loss']:.3f} / acc {h['support_accuracy']:.0%}" for h in history
            )
            summary += f"\n\nAdaptation on the support set, step by step: {steps_text}."
        status_text = summary + ("\n\n" + "\n".join(f"- ⚠️ {n}" for n in notes) if notes else "")
        outputs = [state, status_text, predictions[0].probabilities, html, plot]
        return outputs + ([shared] if shared_data is not None else [])

    classify_inputs = [backbone, method, inner_steps, learned_lr, inner_lr, query_files, query_capture, session, *class_inputs]
    classify_outputs = [session, status, first_label, results, adaptation_plot]
    if shared_data is not None:
        classify_outputs.append(shared_data)
    classify_button.click(classify, classify_inputs, classify_outputs, api_name="image_classify")

    # ---- example sets ---------------------------------------------------------------------
    @user_errors
    def load_example(name: str):
        classes, queries = example_set(name)
        count = len(classes)
        class_names = [n for n, _ in classes] + [""] * (MAX_CLASSES - count)
        class_files = [f for _, f in classes] + [None] * (MAX_CLASSES - count)
        return [count, *class_names, *class_files, *_visibility(count), _target_choices(count, class_names), queries, None]

    example_button.click(
        load_example, example_choice, [visible_count, *class_inputs, *rows, capture_target, query_files, query_capture],
        api_name="image_load_example",
    ).success(classify, classify_inputs, classify_outputs, api_name=False)

    # ---- self-check and map ---------------------------------------------------------------
    @user_errors
    def self_check(state: dict | None):
        if not state or not state.get("classifier"):
            raise ValueError("classify once first (or load an example), then run the self-check")
        classifier: FewShotClassifier = state["classifier"]
        check = classifier.self_check()
        figure = embedding_map_figure(
            classifier.embedding_map(state.get("query_features")), classifier.support_labels.tolist(),
            classifier.class_names, state.get("query_labels", []),
        )
        headers = ["true \\ predicted", *classifier.class_names]
        table = {"headers": headers, "data": confusion_table(check, classifier.class_names)}
        return self_check_markdown(check, classifier.class_names), table, figure

    check_button.click(self_check, session, [check_text, confusion, map_plot], api_name="image_self_check")

    # ---- save and load --------------------------------------------------------------------
    @user_errors
    def save(state: dict | None):
        if not state or not state.get("classifier"):
            raise ValueError("fit a classifier first (press Classify), then save it")
        folder = Path(tempfile.mkdtemp(prefix="fewshot-"))
        return str(state["classifier"].save(folder / "fewshot-image-classifier.safetensors"))

    save_button.click(save, session, saved_file, api_name="image_save")

    @user_errors
    def load(path: Any, backbone_id: str):
        paths = file_paths(path)
        if not paths:  # the file was cleared: leave everything as it is
            return [gr.skip()] * (3 + 3 * MAX_CLASSES)
        classifier = FewShotClassifier.load(paths[0], expected_encoder_id=backbone_id)
        state = {
            "classifier": classifier,
            "captions": [f"{classifier.class_names[int(l)]} (saved example {i + 1})" for i, l in enumerate(classifier.support_labels)],
            "thumbnails": None,
        }
        count = classifier.n_way
        class_names = classifier.class_names + [""] * (MAX_CLASSES - count)
        message = (
            f"Loaded a `{classifier.method}` classifier on `{classifier.encoder_id}` with {count} classes: "
            + ", ".join(classifier.class_names) + ". Add query images and press Classify."
        )
        return [state, message, count, *class_names, *([None] * MAX_CLASSES), *_visibility(count)]

    load_file.upload(
        load, [load_file, backbone], [session, load_status, visible_count, *class_inputs, *rows], api_name="image_load"
    )
