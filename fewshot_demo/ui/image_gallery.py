"""An image class row's thumbnails: a gallery over the row's file list (the list the API reads).

People see and edit the gallery; a change of it updates the hidden file list in the browser
(``GALLERY_TO_FILES``), and its label counts the images.
"""

from __future__ import annotations

from typing import Any, Sequence

import gradio as gr

from fewshot_demo.ui.events import on
from fewshot_demo.ui.gradio_fixes import deleted_gallery_file
from fewshot_demo.ui.values import file_paths

#: Files the gallery of a class row updates its files from (the JS keeps the API's file list in step).
GALLERY_TO_FILES = "(gallery) => [(gallery || []).map((item) => item.image)]"


def image_count_label(count: int) -> str:
    """A class row's gallery label: how many images it holds."""
    if count == 0:
        return "No images yet: drop or upload some, or record them with the webcam"
    return f"{count} image{'' if count == 1 else 's'}"


def gallery_label(value: Any, event: gr.EventData = None) -> Any:  # type: ignore[assignment]
    """A class row's gallery after an upload or a delete: its label counts the images left.

    The handlers that fill the rows set the label with the images; a label from a change event
    could arrive after a later update (frames recorded in a row) and count too few. After a
    delete, the gallery's value may still hold the deleted file (``gradio_fixes.deleted_gallery_file``).
    """
    paths = file_paths(value)
    deleted = deleted_gallery_file(event)
    if deleted:
        paths = [path for path in paths if path != deleted]
    return gr.Gallery(label=image_count_label(len(paths)))


def gallery_values(items: Sequence[Any]) -> list[Any]:
    """The galleries that show these class rows' files, each with its count."""
    return [gr.Gallery(value=file_paths(item) or None, label=image_count_label(len(file_paths(item))))
            for item in items]


def class_gallery() -> gr.Gallery:
    """A class row's thumbnail gallery (created inside the caller's Row)."""
    return gr.Gallery(
        label=image_count_label(0), interactive=True, type="filepath", file_types=["image"], columns=6,
        height=132, object_fit="cover", fit_columns=False, allow_preview=False, scale=3, min_width=160,
        elem_classes=["fs-class-gallery"],
    )


def wire_gallery(files: gr.Component, gallery: gr.Component) -> list[Any]:
    """Keep a row's file list in step with its gallery, and the count; return the triggers of a user's edit."""
    on(gallery.change, None, gallery, files, js=GALLERY_TO_FILES, show_progress="hidden")
    for edit in (gallery.upload, gallery.delete):
        on(edit, gallery_label, gallery, gallery, show_progress="hidden", queue=False)
    return [gallery.upload, gallery.delete]
