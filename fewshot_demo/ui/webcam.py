"""The image tab's webcam and clipboard: frames recorded into a class, live predictions with the
last fit, and a pasted or uploaded picture added to a class.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
from PIL import Image

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core.image_task import classify_images
from fewshot_demo.data.images import to_rgb
from fewshot_demo.encoders.image import load_backbone
from fewshot_demo.ui.events import Group, on
from fewshot_demo.ui.gradio_fixes import guard_image_input, guard_number_input
from fewshot_demo.ui.image_gallery import gallery_values
from fewshot_demo.ui.support.modality import SupportSession
from fewshot_demo.ui.support.rows import INITIAL_CLASSES, ROWS, STALE_NOTE
from fewshot_demo.ui.support.widgets import SupportSetUI
from fewshot_demo.ui.temp_files import TEMP_PREFIX
from fewshot_demo.ui.values import file_paths

#: The webcam sends a frame this often while it streams (seconds), for at most ``CAMERA_SECONDS``.
CAMERA_EVERY = 0.3
CAMERA_SECONDS = 120
#: Camera streams handled at once (each frame is one short forward pass).
CAMERA_STREAMS = Group(limit=4)
#: Frames one recording may add to a class, and the default.
MAX_BURST, BURST_FRAMES = 30, 8


# ------------------------------------------------------------------------------------ arguments
def _number(value: Any, what: str) -> float:
    """``value`` as a finite number (a raw API call can send anything), or a UserInputError saying what to send."""
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number):
        raise UserInputError(f"{what} must be a number, not {str(value)[:40]!r}")
    return number


def _visible_class(target: Any, count: Any, action: str) -> int:
    """The class row ``target`` names (None: the first), checked to be one of the ``count`` visible ones."""
    count = max(0, min(int(_number(count, "the number of classes")), ROWS))
    position = 0.0 if target is None or target == "" else _number(target, "the class to " + action)
    if position != int(position) or not 0 <= position < count:
        raise UserInputError(f"choose one of the visible classes to {action}")
    return int(position)


# ------------------------------------------------------------------------------------ handlers
def capture_targets(count: int, *names: str) -> list[Any]:
    """The 'Add to' and 'Record into' choices: the visible classes, by name when they have one."""
    count = max(0, min(int(_number(count, "the number of classes")), ROWS, len(names)))
    choices = [(str(names[i] or "") or f"Class {i + 1}", i) for i in range(count)]
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
    target = _visible_class(target, count, "add the picture to")
    files = _add_files(files, target, [image_path])
    total = len(file_paths(files[target]))
    return [*files, *gallery_values(files), None,
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
    target = _visible_class(target, count, "record into")
    names, files = class_values[:ROWS], class_values[ROWS:2 * ROWS]
    wanted = max(1, min(int(_number(frames, "the number of frames to record")), MAX_BURST))
    base = file_paths(files[target]) if target < len(files) else []
    if len(base) + wanted > limits().max_images_per_class:
        raise UserInputError(f"a class holds at most {limits().max_images_per_class} images; delete some or record fewer frames")
    burst = Burst(target, wanted, base, folder=tempfile.mkdtemp(prefix=TEMP_PREFIX + "frames-"))
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
    outputs: list[Any] = [gr.skip()] * (3 + 2 * ROWS + n_stale)
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
        outputs[3 + ROWS + burst.target] = gallery_values([files])[0]
        if done and session is not None:
            outputs[3 + 2 * ROWS:] = stale_values(STALE_NOTE)
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


# ------------------------------------------------------------------------------------ builders
@dataclass
class WebcamUI:
    """The webcam panel: the camera, its live prediction, and a recording into a class."""

    camera: gr.Image
    live_label: gr.Label
    live: gr.Checkbox
    burst_target: gr.Dropdown
    burst_frames: gr.Slider
    burst_button: gr.Button
    status: gr.Markdown


@dataclass
class CaptureUI:
    """The clipboard panel: a picture and the class it goes to."""

    picture: gr.Image
    target: gr.Dropdown
    button: gr.Button
    status: gr.Markdown


def _class_choice(label: str, **settings: Any) -> gr.Dropdown:
    """A choice of one of the visible classes (``capture_targets`` keeps its choices up to date)."""
    return gr.Dropdown(choices=[(f"Class {i + 1}", i) for i in range(INITIAL_CLASSES)], value=0, label=label,
                       **settings)


def build_webcam_panel() -> WebcamUI:
    """The webcam accordion, inside the caller's column."""
    with gr.Accordion("Webcam: record frames into a class, or predict live", open=True, elem_id="image-camera"):
        with gr.Row():
            camera = guard_image_input(gr.Image(
                sources=["webcam"], streaming=True, type="pil", label="Camera", height=240,
                webcam_options=gr.WebcamOptions(mirror=True, constraints={
                    "video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}),
                elem_id="camera", scale=2,
            ))
            with gr.Column(scale=2, min_width=200):
                live_label = gr.Label(num_top_classes=5, label="Live prediction", elem_id="live-label")
                live = gr.Checkbox(value=True, label="Classify the camera's frames live (with the last fit)",
                                   elem_id="live-toggle")
        with gr.Row():
            burst_target = _class_choice("Record into", scale=2, min_width=120)
            burst_frames = guard_number_input(gr.Slider(1, MAX_BURST, value=BURST_FRAMES, step=1, label="Frames",
                                                        scale=2, min_width=120, elem_id="burst-frames"),
                                              "the number of frames to record")
            burst_button = gr.Button("Record frames", scale=1, min_width=100, elem_id="burst")
        status = gr.Markdown(elem_id="camera-status")
    return WebcamUI(camera, live_label, live, burst_target, burst_frames, burst_button, status)


def build_capture_panel() -> CaptureUI:
    """The clipboard accordion, inside the caller's column."""
    with gr.Accordion("Add a picture from the clipboard or a file", open=False):
        with gr.Row():
            picture = guard_image_input(gr.Image(sources=["clipboard", "upload"], type="filepath", image_mode=None,
                                                 label="Picture", height=160))
            with gr.Column(min_width=160):
                target = _class_choice("Add to")
                button = gr.Button("Add to class")
                status = gr.Markdown()
    return CaptureUI(picture, target, button, status)


def wire_webcam(webcam: WebcamUI, capture: CaptureUI, widget: SupportSetUI, burst: gr.State) -> None:
    """The class choices follow the class names; a picture or frames go into a class; the stream.

    Args:
        webcam, capture: the panels.
        widget: the tab's support-set widget (its rows receive the pictures; its results go stale).
        burst: the State of the recording (a ``Burst``).
    """
    rows, session = widget.rows, widget.session
    for name_box in rows.names:
        on(name_box.blur, capture_targets, [rows.count, *rows.names], [capture.target, webcam.burst_target],
           show_progress="hidden")
    captured = on(capture.button.click, add_capture, [capture.picture, capture.target, rows.count, *rows.items],
                  [*rows.items, *rows.displays, capture.picture, capture.status])
    on(captured.success, lambda s: widget.stale_values(STALE_NOTE) if s is not None else
       [gr.skip()] * len(widget.stale_outputs), session, widget.stale_outputs)
    on(webcam.burst_button.click, start_burst, [webcam.burst_target, webcam.burst_frames, rows.count, *rows.values],
       [burst, webcam.status], api="image_record")
    on(webcam.camera.stream,
       functools.partial(camera_frame, n_stale=len(widget.stale_outputs), stale_values=widget.stale_values),
       [webcam.camera, burst, webcam.live, session],
       [burst, webcam.live_label, webcam.status, *rows.items, *rows.displays, *widget.stale_outputs],
       group=CAMERA_STREAMS, stream_every=CAMERA_EVERY, time_limit=CAMERA_SECONDS, show_progress="hidden")


def follow_class_names(webcam: WebcamUI, capture: CaptureUI, widget: SupportSetUI, events: Sequence[Any]) -> None:
    """After events that change the class rows: the class choices name the visible classes."""
    rows = widget.rows
    for event in events:
        on(event.then, capture_targets, [rows.count, *rows.names], [capture.target, webcam.burst_target],
           show_progress="hidden")
