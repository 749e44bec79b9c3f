"""The image few-shot tab: classes of uploaded images, a method, queries, and why each prediction.

The class rows, self-check and save/load come from ``ui.support_set``; this module says what an
image class row holds (``ImageModality``) and adds the image-only parts: the webcam/clipboard
capture, the backbone, MAML's adaptation and fine-tuning settings, and the bundled example sets.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
from torch import Tensor

from fewshot_demo.backbones import BACKBONES, DEFAULT_BACKBONE, ImageBackbone, load_backbone
from fewshot_demo.classifier import FewShotClassifier, Prediction
from fewshot_demo.data.builtin import data_from_items
from fewshot_demo.data.image_folder import list_image_folder
from fewshot_demo.image_task import (
    build_support,
    classify_images,
    fit_image_classifier,
    load_images,
)
from fewshot_demo.ui import support_set
from fewshot_demo.ui.common import (
    adaptation_figure,
    file_paths,
    has_adaptation_options,
    has_finetune_options,
    method_choices as registry_choices,
    offer_methods,
    option_slider,
    settings_visibility,
    thumbnail_data_uri,
    user_errors,
)
from fewshot_demo.ui.support_set import INITIAL_CLASSES, Queries, SupportSession, SupportSetUI

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "images"
#: Offered first, in this order; every other method that runs on the backbone follows.
MAIN_METHODS = ("protonet", "maml", "linear")
#: The fine-tune steps' default (the image fine-tune options' default).
FINETUNE_STEPS = 5


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
    return registry_choices("image", backbone_id, MAIN_METHODS)


def method_options(method: str, inner_steps: float, learned_lr: bool, inner_lr: float,
                   finetune_steps: float = FINETUNE_STEPS) -> dict[str, Any]:
    """The settings that apply to the method, as its option values."""
    if has_adaptation_options(method, "image"):
        return {"inner_steps": int(inner_steps), "inner_lr": None if learned_lr else float(inner_lr)}
    if has_finetune_options(method, "image"):
        return {"steps": int(finetune_steps)}
    return {}


class ImageModality(support_set.SupportModality):
    """Class rows of uploaded images; queries are image files."""

    name = "image"
    empty_item = None
    query_noun = "query images"
    tuned = "backbone"
    features_noun = "features"
    add_items_hint = "add images to the classes"

    def item_box(self) -> gr.Component:
        return gr.File(label="Images", file_count="multiple", scale=3, height=110)

    def has_items(self, item: Any) -> bool:
        return bool(file_paths(item))

    def load_encoder(self, encoder_id: str) -> ImageBackbone:
        return load_backbone(encoder_id)

    def _classes(self, rows: list[tuple[str, Any]]) -> list[tuple[str, list[str]]]:
        """(name, paths) of every row with a name or files; empty rows are not classes."""
        classes = [(name, file_paths(item)) for name, item in rows]
        return [(name, paths) for name, paths in classes if name or paths]

    def support_key(self, rows: list[tuple[str, Any]], encoder_id: str, method: str, options: dict[str, Any]) -> str:
        return super().support_key(self._classes(rows), encoder_id, method, options)

    def fit(self, rows: list[tuple[str, Any]], encoder: ImageBackbone, method: str, options: dict[str, Any], key: str,
            progress: support_set.ProgressFn) -> SupportSession:
        support = build_support(self._classes(rows))
        classifier = fit_image_classifier(support, encoder, method, options, progress=progress)
        labels = [support.class_names[int(label)] for label in support.labels]
        return SupportSession(
            modality=self.name,
            classifier=classifier,
            captions=tuple(f"{label}: {source}" for label, source in zip(labels, support.sources)),
            thumbnails=tuple(thumbnail_data_uri(image, 72) for image in support.images),
            support_key=key,
            fit_notes=tuple(support.warnings),
            data=data_from_items("image", support.images, labels),
        )

    def read_queries(self, value: Sequence[str]) -> Queries:
        paths = list(value)
        if not paths:
            raise ValueError("add at least one query image (upload, webcam or clipboard), then press Classify")
        images, names, skipped = load_images(paths, None, "queries")  # None: limits().max_query_images
        if not images:
            raise ValueError("none of the query files is a usable image; " + "; ".join(skipped))
        return Queries(images, names, [thumbnail_data_uri(image) for image in images], skipped)

    def predict(self, classifier: FewShotClassifier, encoder: ImageBackbone,
                items: list[Any]) -> tuple[list[Prediction], Tensor, list[str]]:
        predictions = classify_images(classifier, encoder, items)
        return predictions, encoder.embed(items), []  # embeddings are cached: no second forward pass


IMAGE = ImageModality()


# ------------------------------------------------------------------------------------ handlers
def classify(backbone_id: str, method: str, inner_steps: float, learned_lr: bool, inner_lr: float,
             query_files: Any, captured: str | None, session: SupportSession | None, *class_values: Any,
             finetune_steps: float = FINETUNE_STEPS, progress: Any = gr.Progress()) -> list[Any]:
    """/image_classify: fit (or reuse) and classify; [session, status, first label, cards, adaptation plot].

    ``class_values`` are the class rows' names, then their files. ``finetune_steps`` comes last in
    the API, after the class rows, so positional callers from before it existed keep working.
    """
    result = support_set.classify(
        IMAGE, backbone_id, method, method_options(method, inner_steps, learned_lr, inner_lr, finetune_steps),
        file_paths(query_files) + ([captured] if captured else []), session, class_values,
        progress=lambda fraction, message: progress(fraction, desc=message),
    )
    plot = gr.Plot(value=adaptation_figure(result.history), visible=True) if result.history else gr.Plot(visible=False)
    return [result.session, result.status, result.probabilities, result.cards, plot]


def load_example(name: str) -> list[Any]:
    """/image_load_example: the class rows, queries and an empty capture for a bundled example set."""
    classes, queries = example_set(name)
    return [*support_set.fill_rows(IMAGE, classes), queries, None]


def capture_targets(count: int, *names: str) -> Any:
    """The 'Add to' choices: the visible classes, by name when they have one."""
    return gr.Dropdown(choices=[(names[i] or f"Class {i + 1}", i) for i in range(count)], value=0)


def add_capture(image_path: str | None, target: int | None, count: int, *files: Any) -> list[Any]:
    """Add a webcam or clipboard picture to a class: [*files, cleared capture]."""
    if not image_path:
        raise ValueError("take or paste a picture first, then press 'Add to class'")
    target = int(target or 0)
    if target >= count:
        raise ValueError("choose one of the visible classes to add the picture to")
    files = list(files)
    files[target] = file_paths(files[target]) + [image_path]
    return [*files, None]


# ------------------------------------------------------------------------------------ builder
def build_image_tab() -> SupportSetUI:
    """Create the image tab's components and events inside the caller's Blocks/Tab context.

    Returns:
        The tab's support-set widget; its ``session`` holds the fitted classifier and the classes
        (the comparison tab offers them as a data set).
    """
    session = gr.State(None)  # this browser session's SupportSession
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
            rows = support_set.build_class_rows(IMAGE)
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
            method = gr.Dropdown(choices=method_choices(), value="protonet", label="Method", elem_id="image-method")
            with gr.Group(visible=False, elem_id="image-adaptation") as adaptation_settings:
                inner_steps = option_slider("maml", "image", "inner_steps", 5, 1)
                learned_lr = gr.Checkbox(value=True, label="Use the meta-learned step sizes")
                inner_lr = option_slider("maml", "image", "inner_lr", 0.5, 1e-4, "Step size (when not meta-learned)")
            with gr.Group(visible=False, elem_id="image-finetune") as finetune_settings:
                finetune_steps = option_slider(
                    "finetune", "image", "steps", FINETUNE_STEPS, 1,
                    "Fine-tuning steps (each trains the backbone's last block on every support image)",
                )
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
    widget = SupportSetUI(IMAGE, session, rows, support_set.build_panels())

    # ---- events -------------------------------------------------------------------------------
    row_events = support_set.wire_support_set(
        widget, backbone, clear_outputs=[query_files, query_capture, status, first_label, results],
        clear_values=[None, None, "", None, ""],
    )
    for name_box in rows.names:
        name_box.blur(capture_targets, [rows.count, *rows.names], capture_target, api_name=False)
    capture_button.click(user_errors(add_capture), [capture, capture_target, rows.count, *rows.items],
                         [*rows.items, capture], api_name=False)
    method.change(functools.partial(settings_visibility, "image"), method, [adaptation_settings, finetune_settings],
                  api_name=False)
    backbone.change(functools.partial(offer_methods, method_choices, "linear"), [backbone, method], method,
                    api_name=False)

    classify_inputs = dict(
        inputs=[backbone, method, inner_steps, learned_lr, inner_lr, query_files, query_capture, session, *rows.values],
        inputs_kwargs={"finetune_steps": finetune_steps},
        outputs=[session, status, first_label, results, adaptation_plot],
    )
    classify_button.click(user_errors(classify), **classify_inputs, api_name="image_classify")
    example_loaded = example_button.click(
        user_errors(load_example), example_choice, [*rows.outputs, query_files, query_capture],
        api_name="image_load_example",
    )
    example_loaded.success(user_errors(classify), **classify_inputs, api_name=False)
    for event in [*row_events, example_loaded]:
        event.then(capture_targets, [rows.count, *rows.names], capture_target, api_name=False)
    return widget
