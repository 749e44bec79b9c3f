"""The image few-shot tab: classes of images, a method, queries, and why each prediction.

The class rows, self-check and the export panel come from ``ui.support``; this module says what an
image class row holds (``ImageModality``: a thumbnail gallery with a count, over the file list the
API reads) and adds the image-only parts: one-click example sets (``ui.image_examples``), the webcam
and the clipboard (``ui.webcam``), the backbone, MAML's adaptation, fine-tuning and AdaBN settings.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.classifier import FewShotClassifier, Prediction
from fewshot_demo.core.export import (
    OnnxExport,
    export_image_onnx,
    normalised_images,
    onnx_probabilities,
)
from fewshot_demo.core.image_task import (
    build_support,
    classify_images,
    fit_image_classifier,
    load_images,
)
from fewshot_demo.core.sharing import image_snippet
from fewshot_demo.data.labelled import data_from_items
from fewshot_demo.encoders.backbones import BACKBONES
from fewshot_demo.encoders.image import ImageBackbone, load_backbone
from fewshot_demo.encoders.registry import default_encoder, default_method
from fewshot_demo.methods.adabn import AdaBNConfig
from fewshot_demo.methods.finetune import ImageFinetuneConfig
from fewshot_demo.methods.maml import AdaptationOptions
from fewshot_demo.ui.cards import thumbnail_data_uri
from fewshot_demo.ui.events import CLASSIFY, on
from fewshot_demo.ui.figures import adaptation_figure
from fewshot_demo.ui.gradio_fixes import guard_image_input
from fewshot_demo.ui.image_examples import (
    ExamplesUI,
    build_examples,
    example_set,
    list_example_sets,
    query_class_hint,
)
from fewshot_demo.ui.image_gallery import class_gallery, gallery_values, wire_gallery
from fewshot_demo.ui.methods import method_choices as registry_choices
from fewshot_demo.ui.methods import (
    offer_methods,
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
    ClassRowsUI,
    ResultsUI,
    SupportSetUI,
    build_class_rows,
    build_panels,
)
from fewshot_demo.ui.support.wiring import show_rows, wire_classify, wire_suggestions, wire_support_set
from fewshot_demo.ui.values import file_paths
from fewshot_demo.ui.webcam import (
    build_capture_panel,
    build_webcam_panel,
    follow_class_names,
    wire_webcam,
)

#: Offered first, in this order; every other method that runs on the backbone follows.
MAIN_METHODS = ("protonet", "maml", "linear")
#: The fine-tune steps' default (the image fine-tune options' default).
FINETUNE_STEPS = option_field(ImageFinetuneConfig, "steps").default
#: AdaBN's share of the user's statistics by default (its options' default: full AdaBN).
TARGET_WEIGHT = option_field(AdaBNConfig, "target_weight").default
INTRO = ("Give each class a name and a few images (5 is plenty): drop files on a class, or record them with the "
         "webcam. Pick a method, add query images and press **Classify**. Or click an example set.")


def method_choices(backbone_id: str = default_encoder("image")) -> list[tuple[str, str]]:
    """(label, key) of every method that runs on the backbone, the main ones first."""
    return registry_choices("image", backbone_id, MAIN_METHODS)


def method_options(method: str, inner_steps: float, learned_lr: bool, inner_lr: float,
                   finetune_steps: float = FINETUNE_STEPS, target_weight: float = TARGET_WEIGHT) -> dict[str, Any]:
    """The settings that apply to the method (those of its options class), as its option values."""
    if takes_options(method, "image", AdaptationOptions):
        return {"inner_steps": int(inner_steps), "inner_lr": None if learned_lr else float(inner_lr)}
    if takes_options(method, "image", ImageFinetuneConfig):
        return {"steps": int(finetune_steps)}
    if takes_options(method, "image", AdaBNConfig):
        return {"target_weight": float(target_weight)}
    return {}


def settings_visibility(method: str) -> list[Any]:
    """Show the adaptation, fine-tune and domain-adaptation settings for the methods they apply to."""
    return [gr.Group(visible=takes_options(method, "image", options))
            for options in (AdaptationOptions, ImageFinetuneConfig, AdaBNConfig)]


def adaptation_step_size(learned: bool) -> Any:
    """The step-size slider is only in use while the meta-learned step sizes are not."""
    return gr.Slider(interactive=not learned)


class ImageModality(SupportModality):
    """Class rows of images (a thumbnail gallery over the file list the API reads); queries are image files."""

    name = "image"
    empty_item = None
    query_noun = "query images"
    tuned = "backbone"
    features_noun = "features"
    add_items_hint = "add images to the classes"
    truth_source = "the folder each query file is in"

    def item_box(self) -> gr.Component:
        # The API's input; people see and edit the gallery below, which keeps this in step.
        return gr.File(label="Images", file_count="multiple", visible=False)

    def display_box(self) -> gr.Component:
        return class_gallery()

    def display_values(self, items: Sequence[Any]) -> list[Any]:
        return gallery_values(items)

    def wire_row(self, item: gr.Component, display: gr.Component | None) -> list[Any]:
        return wire_gallery(item, display)

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
            progress: ProgressFn) -> SupportSession:
        support = build_support(self._classes(rows))
        classifier = fit_image_classifier(support, encoder, method, options, progress=progress)
        labels = [support.class_names[int(label)] for label in support.labels]
        return SupportSession(
            modality=self,
            classifier=classifier,
            captions=tuple(f"{label}: {source}" for label, source in zip(labels, support.sources)),
            thumbnails=tuple(thumbnail_data_uri(image, 72) for image in support.images),
            support_key=key,
            fit_notes=tuple(support.warnings),
            data=data_from_items(self.name, support.images, labels),
        )

    def read_queries(self, value: Sequence[str]) -> Queries:
        paths = list(value)
        if not paths:
            raise UserInputError("add at least one query image (upload, webcam or clipboard), then press Classify")
        images, names, skipped = load_images(paths, None, "queries")  # None: limits().max_query_images
        if not images:
            raise UserInputError("none of the query files is a usable image; " + "; ".join(skipped))
        # A query file in a folder named like a class (or a bundled example's query) says its true class.
        hints: list[str | None] = []
        for path in paths:  # load_images keeps the order and names each image it loaded by its file name
            if len(hints) < len(names) and Path(path).name == names[len(hints)]:
                hints.append(query_class_hint(path))
        hints += [None] * (len(images) - len(hints))
        return Queries(images, names, [thumbnail_data_uri(image) for image in images], skipped, hints)

    def predict(self, classifier: FewShotClassifier, encoder: ImageBackbone,
                items: list[Any]) -> tuple[list[Prediction], Tensor, list[str]]:
        predictions = classify_images(classifier, encoder, items)
        return predictions, encoder.embed(items), []  # embeddings are cached: no second forward pass

    def saved_snippet(self, file_name: str, classifier: FewShotClassifier) -> str:
        return image_snippet(file_name, classifier.encoder_id)

    def export_onnx(self, classifier: FewShotClassifier, encoder: ImageBackbone, folder: Path,
                    items: Sequence[Any]) -> tuple[OnnxExport, str, list[Any]]:
        exported = export_image_onnx(classifier, encoder, folder / f"fewshot-{classifier.method}-classifier.onnx")
        shape = (f"a (n, 3, {exported.input_size}, {exported.input_size}) image tensor in, "
                 f"(n, {classifier.n_way}) probabilities out")
        return exported, shape, list(items)

    def onnx_probabilities(self, exported: OnnxExport, encoder: ImageBackbone, items: Sequence[Any]) -> Tensor:
        return onnx_probabilities(exported.path, normalised_images(encoder, list(items)))

    def mistakes_view(self, mistakes: Sequence[tuple[Any, str, str, int]]) -> list[Any]:
        gallery = [(item, f"{true} -> {predicted} ({n}x)") for item, true, predicted, n in mistakes]
        return [gr.Gallery(value=gallery, visible=True), gr.Markdown(visible=False)]


IMAGE = ImageModality()


# ------------------------------------------------------------------------------------ handlers
def classify(backbone_id: str, method: str, inner_steps: float, learned_lr: bool, inner_lr: float,
             query_files: Any, captured: str | None, session: SupportSession | None, *class_values: Any,
             finetune_steps: float = FINETUNE_STEPS, target_weight: float = TARGET_WEIGHT,
             progress: Any = gr.Progress()) -> list[Any]:
    """/image_classify: fit (or reuse) and classify; [session, status, first label, cards, adaptation plot].

    ``class_values`` are the class rows' names, then their files; ``finetune_steps`` and
    ``target_weight`` come last in the (hidden) API, after the class rows.
    """
    options = method_options(method, inner_steps, learned_lr, inner_lr, finetune_steps, target_weight)
    result = classify_support(
        IMAGE, backbone_id, method, options,
        file_paths(query_files) + ([captured] if captured else []), session, class_values,
        progress=lambda fraction, message: progress(fraction, desc=message),
    )
    plot = gr.Plot(value=adaptation_figure(result.history), visible=True) if result.history else gr.Plot(visible=False)
    return [result.session, result.status, result.probabilities, result.cards, plot]


def load_example(name: str) -> list[Any]:
    """/image_load_example: the class rows, queries and an empty capture for a bundled example set."""
    classes, queries = example_set(name)
    return [*fill_rows(IMAGE, classes), queries, None]


def load_example_card(selected: gr.SelectData) -> list[Any]:
    """An example card's click: what ``load_example`` returns for the card's set."""
    sets = list_example_sets()
    index = selected.index if selected is not None else None
    if not isinstance(index, int) or not 0 <= index < len(sets):
        raise UserInputError("pick one of the example sets")
    return load_example(sets[index])


# ------------------------------------------------------------------------------------ builders
@dataclass
class ControlsUI:
    """The column beside the class rows: backbone, method and its settings, queries, Classify."""

    backbone: gr.Dropdown
    method: gr.Dropdown
    adaptation: gr.Group
    inner_steps: gr.Slider
    learned_lr: gr.Checkbox
    inner_lr: gr.Slider
    finetune: gr.Group
    finetune_steps: gr.Slider
    domain: gr.Group
    target_weight: gr.Slider
    query_files: gr.File
    query_capture: gr.Image
    classify_button: gr.Button


def build_controls() -> ControlsUI:
    """The backbone, the method with the settings of its options class, the queries and Classify."""
    # Backbones that give feature vectors (pixels28's raw pixels are for the Conv-4 meta-learners only).
    backbone = gr.Dropdown(choices=[(spec.label, spec.id) for spec in BACKBONES.values() if spec.feature_vectors],
                           value=default_encoder("image"), label="Backbone")
    method = gr.Dropdown(choices=method_choices(), value=default_method("image"), label="Method",
                         elem_id="image-method")
    with gr.Group(visible=False, elem_id="image-adaptation") as adaptation:
        inner_steps = option_slider(AdaptationOptions, "inner_steps", 5, 1)
        learned_lr = gr.Checkbox(value=True, label="Use the meta-learned step sizes")
        inner_lr = option_slider(AdaptationOptions, "inner_lr", 0.5, 1e-4, "Step size (when not meta-learned)",
                                 interactive=False, elem_id="image-step-size")
    with gr.Group(visible=False, elem_id="image-finetune") as finetune:
        finetune_steps = option_slider(ImageFinetuneConfig, "steps", FINETUNE_STEPS, 1,
                                       "Fine-tuning steps (each trains the backbone's last block on every support image)")
    with gr.Group(visible=False, elem_id="image-domain") as domain:
        target_weight = option_slider(
            AdaBNConfig, "target_weight", TARGET_WEIGHT, 0.05,
            "Share of your images' statistics in batch normalisation (1: AdaBN; 0: the ImageNet "
            "statistics, no adaptation)", elem_id="image-target-weight",
        )
    query_files = gr.File(label="Query images", file_count="multiple", height=120, elem_id="image-queries")
    query_capture = guard_image_input(gr.Image(
        sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None,
        label="...or one query from the webcam or clipboard", height=160,
    ))
    classify_button = gr.Button("Classify", variant="primary", elem_id="classify")
    return ControlsUI(backbone, method, adaptation, inner_steps, learned_lr, inner_lr, finetune, finetune_steps,
                      domain, target_weight, query_files, query_capture, classify_button)


def build_results(session: gr.State, rows: ClassRowsUI) -> SupportSetUI:
    """The status, the first query's label, the adaptation plot and the cards, then the panels."""
    status = gr.Markdown(elem_id="image-status", elem_classes=["fs-status"])
    with gr.Row():
        first_label = gr.Label(num_top_classes=5, label="First query", scale=1)
        adaptation_plot = gr.Plot(label="Adaptation", visible=False, scale=1)
    cards = gr.HTML(elem_id="image-results")
    return SupportSetUI(IMAGE, session, rows, build_panels(onnx="Export to ONNX (backbone + head, one file)"),
                        ResultsUI(status, first_label, cards, [(adaptation_plot, gr.Plot(visible=False))]))


def build_image_tab() -> SupportSetUI:
    """Create the image tab's components and events inside the caller's Blocks/Tab context.

    Returns:
        The tab's support-set widget; its ``session`` holds the fitted classifier and the classes
        (the comparison tab offers them as a data set).
    """
    page_style()
    session = gr.State(None)  # this browser session's SupportSession
    gr.Markdown(INTRO)
    examples = build_examples()
    with gr.Row():
        with gr.Column(scale=3):
            rows = build_class_rows(IMAGE)
            webcam = build_webcam_panel()
            capture = build_capture_panel()
        with gr.Column(scale=2, min_width=260):
            controls = build_controls()
    widget = build_results(session, rows)
    burst = gr.State(None)  # the last recording (a Burst) until the next Classify, or None
    wire_suggestions(widget, controls.query_files, lambda trigger: wire_classify_button(controls, widget, trigger))
    row_events = wire_support_set(
        widget, controls.backbone, clear_outputs=[controls.query_files, controls.query_capture, webcam.status,
                                                  capture.status], clear_values=[None, None, "", ""],
    )
    wire_webcam(webcam, capture, widget, burst)
    wire_controls(controls)
    classified = wire_classify_button(controls, widget, controls.classify_button.click, api="image_classify")
    on(classified.success, lambda: None, None, burst)  # a finished recording is now fitted
    row_events += wire_examples(examples, controls, widget)
    row_events.append(wire_project(widget, project_controls(controls)))
    follow_class_names(webcam, capture, widget, row_events)
    return widget


# ------------------------------------------------------------------------------------ events
def project_controls(controls: ControlsUI) -> ProjectControls:
    """What an image project holds beyond the class rows: backbone, method, settings, query images."""
    def settings(options: dict[str, Any], keep: Any = gr.skip()) -> list[Any]:  # inner_lr None: meta-learned
        return [options.get("inner_steps", keep), keep if (lr := options.get("inner_lr", keep)) is keep else lr is None,
                keep if lr is None else lr, options.get("steps", keep), options.get("target_weight", keep)]
    return ProjectControls(controls.backbone, controls.method, [controls.inner_steps, controls.learned_lr,
                           controls.inner_lr, controls.finetune_steps, controls.target_weight],
                           [controls.query_files, controls.query_capture], method_options, settings,
                           lambda files, captured: file_paths(files) + ([captured] if captured else []),
                           lambda paths: [list(paths) or None, None], file_paths, lambda paths: list(paths) or None)


def wire_controls(controls: ControlsUI) -> None:
    """The settings follow the method; the methods follow the backbone."""
    on(controls.method.change, settings_visibility, controls.method,
       [controls.adaptation, controls.finetune, controls.domain])
    on(controls.learned_lr.change, adaptation_step_size, controls.learned_lr, controls.inner_lr, show_progress="hidden")
    on(controls.backbone.change, functools.partial(offer_methods, method_choices, default_method("image")),
       [controls.backbone, controls.method], controls.method)


def wire_classify_button(controls: ControlsUI, widget: SupportSetUI, trigger: Any, api: str | None = None) -> Any:
    """A Classify (the button's, or after an example loads): fit or reuse, classify, show why."""
    results = widget.results
    outputs = [widget.session, *results.components]
    event = on(
        trigger, classify,
        [controls.backbone, controls.method, controls.inner_steps, controls.learned_lr, controls.inner_lr,
         controls.query_files, controls.query_capture, widget.session, *widget.rows.values],
        outputs, inputs_kwargs={"finetune_steps": controls.finetune_steps, "target_weight": controls.target_weight},
        api=api, group=CLASSIFY, errors=results.status_line(offset=1),
        show_progress_on=[results.status],
    )
    wire_classify(widget, event)
    return event


def wire_examples(examples: ExamplesUI, controls: ControlsUI, widget: SupportSetUI) -> list[Any]:
    """A card's click (or the API's load by name) fills the rows and queries, then classifies.

    Returns:
        The events that fill the class rows.
    """
    loads = []
    for loader, api, source, trigger in ((load_example, "image_load_example", examples.choice, examples.button.click),
                                         (load_example_card, None, None, examples.cards.select)):
        loaded = on(trigger, loader, source, [*widget.rows.outputs, controls.query_files, controls.query_capture],
                    api=api)
        show_rows(widget, loaded)
        # The panels of the previous set are cleared before its queries are classified.
        cleared = on(loaded.success, lambda: widget.stale_values(""), None, widget.stale_outputs,
                     show_progress="hidden")
        wire_classify_button(controls, widget, cleared.success)
        loads.append(loaded)
    return loads
