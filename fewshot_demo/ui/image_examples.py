"""The image tab's bundled example sets (``examples/images/<set>/support|query/<class>/*``).

A card per set (``build_examples``) (a preview of its classes), its classes and queries, and the true class of a
bundled query recognised by its content when the browser uploads it under a new name.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data.image_folder import list_image_folder
from fewshot_demo.data.images import to_rgb
from fewshot_demo.ui.temp_files import TEMP_PREFIX

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "images"


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
    path = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "preview-")) / f"{name}.jpg"
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


@dataclass
class ExamplesUI:
    """The example cards, and the hidden name and button the API loads an example by."""

    cards: gr.Gallery
    choice: gr.Dropdown
    button: gr.Button


def build_examples() -> ExamplesUI:
    """One card per bundled example set; a click loads it and classifies its queries."""
    sets = list_example_sets()
    cards = gr.Gallery(
        value=[(example_preview(name), example_caption(name)) for name in sets], columns=4, height="auto",
        allow_preview=False, object_fit="contain", interactive=False, buttons=[],
        label="Example sets: one click loads a set and classifies its queries", elem_id="image-examples",
        elem_classes=["fs-examples"],
    )
    # The API's way to load an example by name (the cards are the page's way).
    with gr.Row(visible=False):
        choice = gr.Dropdown(choices=sets, value=(sets or [None])[0], label="Example set")
        button = gr.Button("Load example and classify", elem_id="load-example")
    return ExamplesUI(cards, choice, button)
