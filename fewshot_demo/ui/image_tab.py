"""The image few-shot tab: classes of images, a method, queries, and why each prediction.

The class rows, self-check and the export panel come from ``ui.support_set``; this module says what
an image class row holds (``ImageModality``: a thumbnail gallery with a count, over the file list the
API reads) and adds the image-only parts: one-click example sets, the webcam (frames recorded into a
class, live prediction with the fitted classifier), the clipboard, the backbone, MAML's adaptation
and fine-tuning settings.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
from PIL import Image
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core.classifier import MAX_CLASSES, FewShotClassifier, Prediction
from fewshot_demo.core.image_task import (
    build_support,
    classify_images,
    fit_image_classifier,
    load_images,
)
from fewshot_demo.data.labelled import data_from_items
from fewshot_demo.data.image_folder import list_image_folder
from fewshot_demo.data.images import to_rgb
from fewshot_demo.encoders.backbones import BACKBONES
from fewshot_demo.encoders.image import ImageBackbone, load_backbone
from fewshot_demo.encoders.registry import default_encoder
from fewshot_demo.ui import support_set
from fewshot_demo.ui.common import (
    adaptation_figure,
    errors_in_status,
    file_paths,
    has_adaptation_options,
    has_domain_options,
    has_finetune_options,
    offer_methods,
    option_slider,
    page_style,
    settings_visibility,
    thumbnail_data_uri,
    user_errors,
)
from fewshot_demo.ui.common import (
    method_choices as registry_choices,
)
from fewshot_demo.ui.support_set import (
    INITIAL_CLASSES,
    Queries,
    ResultsUI,
    SupportSession,
    SupportSetUI,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "images"
#: Offered first, in this order; every other method that runs on the backbone follows.
MAIN_METHODS = ("protonet", "maml", "linear")
#: The fine-tune steps' default (the image fine-tune options' default).
FINETUNE_STEPS = 5
#: AdaBN's share of the user's statistics by default (its options' default: full AdaBN).
TARGET_WEIGHT = 1.0
#: The webcam sends a frame this often while it streams (seconds), for at most ``CAMERA_SECONDS``.
CAMERA_EVERY = 0.3
CAMERA_SECONDS = 120
#: Frames one recording may add to a class, and the default.
MAX_BURST, BURST_FRAMES = 30, 8
#: Files the gallery of a class row updates its files from (the JS keeps the API's file list in step).
GALLERY_TO_FILES = "(gallery) => [(gallery || []).map((item) => item.image)]"


def list_example_sets() -> list[str]:
    """Names of the bundled example sets (folders with a support/ sub-folder)."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "support").is_dir())


def example_set(name: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Return ([(class name, support image paths)], query image paths) of a bundled example set."""
    if name not in list_example_sets():
        raise UserInputError(f"unknown example set {name!r}; choose one of {', '.join(list_example_sets())}")
    support = list_image_folder(EXAMPLES_DIR / name / "support")
    classes: dict[str, list[str]] = {}
    for path, label in zip(support.paths, support.labels):
        classes.setdefault(label, []).append(str(path))
    query_dir = EXAMPLES_DIR / name / "query"
    queries = [str(p) for p in list_image_folder(query_dir).paths] if query_dir.is_dir() else []
    return list(classes.items()), queries


@functools.cache
def example_preview(name: str, cell: int = 80) -> str:
    """A 3 x 2 grid of one thumbnail per class (at most 6) of an example set, written once to a temp file."""
    classes, _ = example_set(name)
    grid = Image.new("RGB", (3 * cell, 2 * cell), (255, 255, 255))
    for position, (_, paths) in enumerate(classes[:6]):
        with Image.open(paths[0]) as opened:
            thumb = to_rgb(opened)
        thumb.thumbnail((cell - 6, cell - 6))
        left, top = (position % 3) * cell, (position // 3) * cell
        grid.paste(thumb, (left + (cell - thumb.width) // 2, top + (cell - thumb.height) // 2))
    path = Path(tempfile.mkdtemp(prefix="fewshot-preview-")) / f"{name}.jpg"
    grid.save(path, quality=85)
    return str(path)


def example_caption(name: str) -> str:
    """What an example card says: the classes, images per class and queries."""
    classes, queries = example_set(name)
    shots = sorted({len(paths) for _, paths in classes})
    per_class = f"{shots[0]}" if len(shots) == 1 else f"{shots[0]}-{shots[-1]}"
    names = ", ".join(n.replace("_", " ") for n, _ in classes)
    return f"{name.replace('_', ' ')}: {names}; {per_class} images each, {len(queries)} queries"


@functools.cache
def example_query_classes() -> dict[str, str]:
    """The bundled example queries by content (SHA-1 of the file) -> their class (the folder they are in).

    A browser uploads a query under a new path, so its folder is lost; its content still says
    which example it is.
    """
    found = {}
    for name in list_example_sets():
        for path in (EXAMPLES_DIR / name / "query").glob("*/*"):
            if path.is_file():
                found[hashlib.sha1(path.read_bytes()).hexdigest()] = path.parent.name
    return found


def query_class_hint(path: str) -> str:
    """What may name a query file's true class: a bundled example's class, else the file's folder."""
    try:
        digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    except OSError:
        return Path(path).parent.name
    return example_query_classes().get(digest, Path(path).parent.name)


def method_choices(backbone_id: str = default_encoder("image")) -> list[tuple[str, str]]:
    """(label, key) of every method that runs on the backbone, the main ones first."""
    return registry_choices("image", backbone_id, MAIN_METHODS)


def method_options(method: str, inner_steps: float, learned_lr: bool, inner_lr: float,
                   finetune_steps: float = FINETUNE_STEPS, target_weight: float = TARGET_WEIGHT) -> dict[str, Any]:
    """The settings that apply to the method, as its option values."""
    if has_adaptation_options(method, "image"):
        return {"inner_steps": int(inner_steps), "inner_lr": None if learned_lr else float(inner_lr)}
    if has_finetune_options(method, "image"):
        return {"steps": int(finetune_steps)}
    if has_domain_options(method, "image"):
        return {"target_weight": float(target_weight)}
    return {}


def domain_settings_visibility(method: str) -> Any:
    """Show the domain-adaptation settings for the methods they apply to."""
    return gr.Group(visible=has_domain_options(method, "image"))


def image_count_label(count: int) -> str:
    """A class row's gallery label: how many images it holds."""
    if count == 0:
        return "No images yet: drop or upload some, or record them with the webcam"
    return f"{count} image{'' if count == 1 else 's'}"


def gallery_label(value: Any, event: gr.EventData = None) -> Any:  # type: ignore[assignment]
    """A class row's gallery after an upload or a delete: its label counts the images left.

    The handlers that fill the rows set the label with the images; a label from a change event
    could arrive after a later update (frames recorded in a row) and count too few. A gallery's
    delete event names the deleted file as ``{"file": FileData, "index": i}`` (``gr.DeletedFileData``
    expects a bare FileData, so the generic event data is read), and its value may still hold it.
    """
    paths = file_paths(value)
    data = getattr(event, "_data", None)
    deleted = (data.get("file") or {}).get("path") if isinstance(data, dict) else None
    if deleted:
        paths = [path for path in paths if path != deleted]
    return gr.Gallery(label=image_count_label(len(paths)))


class ImageModality(support_set.SupportModality):
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
        return gr.Gallery(
            label=image_count_label(0), interactive=True, type="filepath", file_types=["image"], columns=6,
            height=132, object_fit="cover", fit_columns=False, allow_preview=False, scale=3, min_width=160,
            elem_classes=["fs-class-gallery"],
        )

    def display_values(self, items: Sequence[Any]) -> list[Any]:
        return [gr.Gallery(value=file_paths(item) or None, label=image_count_label(len(file_paths(item))))
                for item in items]

    def wire_row(self, item: gr.Component, display: gr.Component | None) -> list[Any]:
        display.change(None, display, item, js=GALLERY_TO_FILES, api_name=False, show_progress="hidden")
        for edit in (display.upload, display.delete):
            edit(gallery_label, display, display, api_name=False, show_progress="hidden", queue=False)
        return [display.upload, display.delete]

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
    result = support_set.classify(
        IMAGE, backbone_id, method, options,
        file_paths(query_files) + ([captured] if captured else []), session, class_values,
        progress=lambda fraction, message: progress(fraction, desc=message),
    )
    plot = gr.Plot(value=adaptation_figure(result.history), visible=True) if result.history else gr.Plot(visible=False)
    return [result.session, result.status, result.probabilities, result.cards, plot]


def load_example(name: str) -> list[Any]:
    """/image_load_example: the class rows, queries and an empty capture for a bundled example set."""
    classes, queries = example_set(name)
    return [*support_set.fill_rows(IMAGE, classes), queries, None]


def load_example_card(selected: gr.SelectData) -> list[Any]:
    """An example card's click: what ``load_example`` returns for the card's set."""
    sets = list_example_sets()
    index = selected.index if selected is not None else None
    if not isinstance(index, int) or not 0 <= index < len(sets):
        raise UserInputError("pick one of the example sets")
    return load_example(sets[index])


def capture_targets(count: int, *names: str) -> list[Any]:
    """The 'Add to' and 'Record into' choices: the visible classes, by name when they have one."""
    choices = [(names[i] or f"Class {i + 1}", i) for i in range(count)]
    return [gr.Dropdown(choices=choices), gr.Dropdown(choices=choices)]


def _add_files(files: Sequence[Any], target: int, paths: list[str]) -> list[Any]:
    files = list(files)
    total = len(file_paths(files[target])) + len(paths)
    if total > limits().max_images_per_class:
        raise UserInputError(f"a class holds at most {limits().max_images_per_class} images; delete some first")
    files[target] = file_paths(files[target]) + paths
    return files


def add_capture(image_path: str | None, target: int | None, count: int, *files: Any) -> list[Any]:
    """Add a clipboard or uploaded picture to a class: [*files, *galleries, cleared capture, confirmation]."""
    if not image_path:
        raise UserInputError("paste or upload a picture first, then press 'Add to class'")
    target = int(target or 0)
    if target >= count:
        raise UserInputError("choose one of the visible classes to add the picture to")
    files = _add_files(files, target, [image_path])
    total = len(file_paths(files[target]))
    return [*files, *IMAGE.display_values(files), None,
            f"Added to class {target + 1}: it now has {total} image{'' if total == 1 else 's'}."]


@dataclasses.dataclass
class Burst:
    """A recording of webcam frames into a class (the camera's State while it records, and until the
    next Classify).

    The frames recorded so far are kept here, not read back from the page: frames arrive faster
    than the page shows the previous one's result, so a row's files in a frame's inputs can lag.

    Attributes:
        target: the class row the frames go to.
        wanted: frames to record.
        base: the row's files when the recording started.
        frames: the recorded frames (JPEG files in ``folder``).
        folder: where the frames are written.
    """

    target: int
    wanted: int
    base: list[str]
    frames: list[str] = dataclasses.field(default_factory=list)
    folder: str = ""
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def recorded(self) -> int:
        return len(self.frames)

    @property
    def done(self) -> bool:
        return self.recorded >= self.wanted


def start_burst(target: int | None, frames: float, count: int, *class_values: Any) -> list[Any]:
    """/image_record: the next ``frames`` webcam frames go into class ``target``: [burst, camera status].

    ``class_values`` are the class rows' names, then their files.
    """
    target = int(target or 0)
    if target >= count:
        raise UserInputError("choose one of the visible classes to record into")
    names, files = class_values[:MAX_CLASSES], class_values[MAX_CLASSES:2 * MAX_CLASSES]
    wanted = max(1, min(int(frames), MAX_BURST))
    base = file_paths(files[target]) if target < len(files) else []
    if len(base) + wanted > limits().max_images_per_class:
        raise UserInputError(f"a class holds at most {limits().max_images_per_class} images; delete some or record fewer frames")
    burst = Burst(target, wanted, base, folder=tempfile.mkdtemp(prefix="fewshot-frames-"))
    name = names[target] if target < len(names) and names[target] else f"class {target + 1}"
    return [burst, f"**Recording {wanted} frame{'s' if wanted != 1 else ''} into {name}**: press Record on the camera "
                   "(it is already recording if it shows Stop). Hold the object in view and move it a little."]


def camera_frame(frame: Image.Image | None, burst: Burst | None, live: bool, session: SupportSession | None,
                 n_stale: int = 0, stale_values: Any = None) -> list[Any]:
    """One webcam frame: record it into a class, or classify it live with the fitted classifier.

    ``stale_values(status)`` gives the tab's cleared results and panels (``n_stale`` of them), shown
    once a recording ends (the classes changed).

    Returns:
        [burst, live probabilities, camera status, *files, *galleries, *stale panels].
    """
    outputs: list[Any] = [gr.skip()] * (3 + 2 * MAX_CLASSES + n_stale)
    if frame is None:
        return outputs
    frame = to_rgb(frame)
    if burst is not None and not burst.done:
        with burst.lock:  # frames of one stream may be handled at the same time
            if burst.done:
                return outputs
            path = Path(burst.folder) / f"frame-{burst.recorded + 1:03d}.jpg"
            frame.save(path, quality=90)
            burst.frames.append(str(path))
            files = burst.base + burst.frames
            done = burst.done
        outputs[0] = burst
        outputs[2] = (f"**Recorded {len(files) - len(burst.base)} of {burst.wanted} frames** into class {burst.target + 1}"
                      + (": done. Press **Classify** to fit the classes with them." if done else "..."))
        outputs[3 + burst.target] = files
        outputs[3 + MAX_CLASSES + burst.target] = IMAGE.display_values([files])[0]
        if done and session is not None:
            outputs[3 + 2 * MAX_CLASSES:] = stale_values(support_set.STALE_NOTE)
        return outputs
    if not live:
        return outputs
    if session is None:
        outputs[2] = "Fit a classifier first (press **Classify**), then the camera's frames are classified live."
        return outputs
    classifier = session.classifier
    began = time.perf_counter()
    prediction = classify_images(classifier, load_backbone(classifier.encoder_id), [frame])[0]
    took = 1000 * (time.perf_counter() - began)
    outputs[1] = prediction.probabilities
    recorded = (f"Recorded {burst.recorded} frames into class {burst.target + 1}: press **Classify** to fit the "
                "classes with them. " if burst is not None and burst.done else "")
    outputs[2] = recorded + (f"**Live: {prediction.label}** ({prediction.probabilities[prediction.label]:.0%}), "
                             f"{took:.0f} ms for this frame with {classifier.spec.label} on `{classifier.encoder_id}` "
                             f"(the classes of the last fit: {', '.join(classifier.class_names)}).")
    return outputs


def adaptation_step_size(learned: bool) -> Any:
    """The step-size slider is only in use while the meta-learned step sizes are not."""
    return gr.Slider(interactive=not learned)


# ------------------------------------------------------------------------------------ builder
def build_image_tab() -> SupportSetUI:
    """Create the image tab's components and events inside the caller's Blocks/Tab context.

    Returns:
        The tab's support-set widget; its ``session`` holds the fitted classifier and the classes
        (the comparison tab offers them as a data set).
    """
    page_style()
    session = gr.State(None)  # this browser session's SupportSession
    gr.Markdown(
        "Give each class a name and a few images (5 is plenty): drop files on a class, or record them with the "
        "webcam. Pick a method, add query images and press **Classify**. Or click an example set."
    )
    sets = list_example_sets()
    example_cards = gr.Gallery(
        value=[(example_preview(name), example_caption(name)) for name in sets], columns=4, height="auto",
        allow_preview=False, object_fit="contain", interactive=False, buttons=[],
        label="Example sets: one click loads a set and classifies its queries", elem_id="image-examples",
        elem_classes=["fs-examples"],
    )
    # The API's way to load an example by name (the cards above are the page's way).
    with gr.Row(visible=False):
        example_choice = gr.Dropdown(choices=sets, value=(sets or [None])[0], label="Example set")
        example_button = gr.Button("Load example and classify", elem_id="load-example")
    with gr.Row():
        with gr.Column(scale=3):
            rows = support_set.build_class_rows(IMAGE)
            with gr.Accordion("Webcam: record frames into a class, or predict live", open=True,
                              elem_id="image-camera"):
                with gr.Row():
                    camera = gr.Image(
                        sources=["webcam"], streaming=True, type="pil", label="Camera", height=240,
                        webcam_options=gr.WebcamOptions(mirror=True, constraints={
                            "video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}),
                        elem_id="camera", scale=2,
                    )
                    with gr.Column(scale=2, min_width=200):
                        live_label = gr.Label(num_top_classes=5, label="Live prediction", elem_id="live-label")
                        live = gr.Checkbox(value=True, label="Classify the camera's frames live (with the last fit)",
                                           elem_id="live-toggle")
                with gr.Row():
                    burst_target = gr.Dropdown(choices=[(f"Class {i + 1}", i) for i in range(INITIAL_CLASSES)],
                                               value=0, label="Record into", scale=2, min_width=120)
                    burst_frames = gr.Slider(1, MAX_BURST, value=BURST_FRAMES, step=1, label="Frames", scale=2,
                                             min_width=120, elem_id="burst-frames")
                    burst_button = gr.Button("Record frames", scale=1, min_width=100, elem_id="burst")
                camera_status = gr.Markdown(elem_id="camera-status")
            with gr.Accordion("Add a picture from the clipboard or a file", open=False):
                with gr.Row():
                    capture = gr.Image(sources=["clipboard", "upload"], type="filepath", image_mode=None,
                                       label="Picture", height=160)
                    with gr.Column(min_width=160):
                        capture_target = gr.Dropdown(
                            choices=[(f"Class {i + 1}", i) for i in range(INITIAL_CLASSES)], value=0, label="Add to"
                        )
                        capture_button = gr.Button("Add to class")
                        capture_status = gr.Markdown()
        with gr.Column(scale=2, min_width=260):
            backbone = gr.Dropdown(
                choices=[(spec.label, spec.id) for spec in BACKBONES.values() if spec.id != "pixels28"],
                value=default_encoder("image"), label="Backbone",
            )
            method = gr.Dropdown(choices=method_choices(), value="protonet", label="Method", elem_id="image-method")
            with gr.Group(visible=False, elem_id="image-adaptation") as adaptation_settings:
                inner_steps = option_slider("maml", "image", "inner_steps", 5, 1)
                learned_lr = gr.Checkbox(value=True, label="Use the meta-learned step sizes")
                inner_lr = option_slider("maml", "image", "inner_lr", 0.5, 1e-4, "Step size (when not meta-learned)",
                                         interactive=False, elem_id="image-step-size")
            with gr.Group(visible=False, elem_id="image-finetune") as finetune_settings:
                finetune_steps = option_slider(
                    "finetune", "image", "steps", FINETUNE_STEPS, 1,
                    "Fine-tuning steps (each trains the backbone's last block on every support image)",
                )
            with gr.Group(visible=False, elem_id="image-domain") as domain_settings:
                target_weight = option_slider(
                    "adabn", "image", "target_weight", TARGET_WEIGHT, 0.05,
                    "Share of your images' statistics in batch normalisation (1: AdaBN; 0: the ImageNet "
                    "statistics, no adaptation)", elem_id="image-target-weight",
                )
            query_files = gr.File(label="Query images", file_count="multiple", height=120, elem_id="image-queries")
            query_capture = gr.Image(
                sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None,
                label="...or one query from the webcam or clipboard", height=160,
            )
            classify_button = gr.Button("Classify", variant="primary", elem_id="classify")

    status = gr.Markdown(elem_id="image-status", elem_classes=["fs-status"])
    with gr.Row():
        first_label = gr.Label(num_top_classes=5, label="First query", scale=1)
        adaptation_plot = gr.Plot(label="Adaptation", visible=False, scale=1)
    results = gr.HTML(elem_id="image-results")
    widget = SupportSetUI(IMAGE, session, rows, support_set.build_panels(onnx="Export to ONNX (backbone + head, one file)"),
                          ResultsUI(status, first_label, results, [(adaptation_plot, gr.Plot(visible=False))]))
    burst = gr.State(None)  # the last recording (a Burst) until the next Classify, or None

    # ---- events -------------------------------------------------------------------------------
    row_events = support_set.wire_support_set(
        widget, backbone, clear_outputs=[query_files, query_capture, camera_status, capture_status],
        clear_values=[None, None, "", ""],
    )
    targets = [capture_target, burst_target]
    for name_box in rows.names:
        name_box.blur(capture_targets, [rows.count, *rows.names], targets, api_name=False, show_progress="hidden")
    captured = capture_button.click(
        user_errors(add_capture), [capture, capture_target, rows.count, *rows.items],
        [*rows.items, *rows.displays, capture, capture_status], api_name=False,
    )
    captured.success(lambda s: widget.stale_values(support_set.STALE_NOTE) if s is not None else
                     [gr.skip()] * len(widget.stale_outputs), session, widget.stale_outputs, api_name=False)
    burst_button.click(user_errors(start_burst), [burst_target, burst_frames, rows.count, *rows.values],
                       [burst, camera_status], api_name="image_record")
    camera.stream(
        functools.partial(camera_frame, n_stale=len(widget.stale_outputs), stale_values=widget.stale_values),
        [camera, burst, live, session],
        [burst, live_label, camera_status, *rows.items, *rows.displays, *widget.stale_outputs],
        stream_every=CAMERA_EVERY, time_limit=CAMERA_SECONDS, concurrency_limit=4, show_progress="hidden",
        api_name=False,
    )
    method.change(functools.partial(settings_visibility, "image"), method, [adaptation_settings, finetune_settings],
                  api_name=False)
    method.change(domain_settings_visibility, method, domain_settings, api_name=False, show_progress="hidden")
    learned_lr.change(adaptation_step_size, learned_lr, inner_lr, api_name=False, show_progress="hidden")
    backbone.change(functools.partial(offer_methods, method_choices, "linear"), [backbone, method], method,
                    api_name=False)

    classify_outputs = [session, status, first_label, results, adaptation_plot]
    classify_inputs = dict(
        inputs=[backbone, method, inner_steps, learned_lr, inner_lr, query_files, query_capture, session, *rows.values],
        inputs_kwargs={"finetune_steps": finetune_steps, "target_weight": target_weight},
        outputs=classify_outputs,
        show_progress_on=[status],
    )
    classify_handler = errors_in_status(classify, len(classify_outputs), 1,
                                        {2: None, 3: "", 4: gr.Plot(visible=False)})
    classified = classify_button.click(classify_handler, **classify_inputs, api_name="image_classify")
    support_set.wire_classify(widget, classified)
    classified.success(lambda: None, None, burst, api_name=False)  # a finished recording is now fitted
    for loader, api_name, source, trigger in ((load_example, "image_load_example", example_choice, example_button.click),
                                              (load_example_card, False, None, example_cards.select)):
        loaded = trigger(user_errors(loader), source, [*rows.outputs, query_files, query_capture], api_name=api_name)
        support_set.show_rows(widget, loaded)
        # The panels of the previous set are cleared before its queries are classified.
        cleared = loaded.success(lambda: widget.stale_values(""), None, widget.stale_outputs, api_name=False,
                                 show_progress="hidden")
        support_set.wire_classify(widget, cleared.success(classify_handler, **classify_inputs, api_name=False))
        row_events.append(loaded)
    for event in row_events:
        event.then(capture_targets, [rows.count, *rows.names], targets, api_name=False, show_progress="hidden")
    return widget
