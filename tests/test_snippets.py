"""Every code snippet the app shows is run here as a user would run it, and what it prints is compared
with the app's own probabilities.

The snippets: after an ONNX export, the onnxruntime code for the image graph and for the text zip
(``OnnxExport.snippet``); after a save, the Python that loads the .safetensors file and classifies with
it (``save_snippet``, which shows ``text_snippet`` for a text classifier). Each is written next to the
file it names and run by this venv's python in a fresh process, in a folder of its own; the ONNX
snippets print probabilities rounded to 3 places, hence their tolerance.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import fewshot_demo
from fewshot_demo.core.export import export_image_onnx, export_text_onnx
from fewshot_demo.core.image_task import (
    build_support,
    classify_images,
    fit_image_classifier,
)
from fewshot_demo.core.text_task import (
    build_text_support,
    classify_texts,
    fit_text_classifier,
)
from fewshot_demo.data.images import load_image
from fewshot_demo.encoders.registry import default_encoder
from fewshot_demo.encoders.text import load_encoder
from fewshot_demo.ui.image_tab import IMAGE
from fewshot_demo.ui.support.panels import save_snippet
from fewshot_demo.ui.text_tab import TEXT

ANIMALS = Path(__file__).resolve().parents[1] / "examples" / "images" / "animals"
QUERY_IMAGE = ANIMALS / "query" / "bird" / "pigeon.jpg"
#: The texts the text snippets classify (they are written into the snippets).
SNIPPET_TEXTS = ["a text to classify", "another one"]
INTENTS = [
    ("greeting", "hello there\nhi, how are you?\ngood morning!"),
    ("weather", "will it rain tomorrow?\nhow hot is it today\nwhat's the forecast"),
    ("music", "play some jazz\nskip this song\nturn the music up"),
]
#: Half a unit of the 3rd decimal the ONNX snippets print, plus the graph's own difference from the app.
ROUNDED = 5e-4 + 1e-4
#: The saved-file snippets print the probabilities unrounded.
TOLERANCE = {"image_onnx": ROUNDED, "text_onnx": ROUNDED, "image_saved": 1e-4, "text_saved": 1e-4}

pytestmark = pytest.mark.usefixtures("single_thread")


class Run:
    """A snippet started as ``use.py`` in its folder, with this python and the package this test imports.

    Started as soon as its files are written and read when a test needs it: the four snippets run while
    the next export is made, instead of one after the other.
    """

    def __init__(self, code: str, folder: Path) -> None:
        (folder / "use.py").write_text(code)
        package_root = str(Path(fewshot_demo.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen([sys.executable, "use.py"], cwd=folder, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def lines(self) -> list[str]:
        """The lines it printed, once it has finished (it must succeed)."""
        stdout, stderr = self.process.communicate(timeout=300)
        assert self.process.returncode == 0, stderr[-3000:]
        return [line for line in stdout.splitlines() if line.strip()]


def printed_probabilities(line: str) -> tuple[str, dict[str, float]]:
    """'label {class: p, ...}' (what the snippets print after the text, if any) -> (label, probabilities)."""
    head, _, mapping = line.partition(" {")
    return head.rsplit(" ", 1)[-1], ast.literal_eval("{" + mapping)


def assert_close(got: dict[str, float], want: dict[str, float], atol: float) -> None:
    assert list(got) == list(want)
    assert max(abs(got[name] - want[name]) for name in want) <= atol, (got, want)


# ------------------------------------------------------------------------------------ the snippets, started
@pytest.fixture(scope="module")
def runs(backbone, tmp_path_factory):
    """{snippet: (its run, the app's probabilities per query)} for the four snippets, all started."""
    classes = [(folder.name, sorted(str(p) for p in folder.iterdir())[:3])
               for folder in sorted((ANIMALS / "support").iterdir()) if folder.is_dir()]
    image = fit_image_classifier(build_support(classes), backbone, "linear")
    image_app = [p.probabilities for p in classify_images(image, backbone, [load_image(str(QUERY_IMAGE))])]
    encoder = load_encoder(default_encoder("text"))
    text, _ = fit_text_classifier(build_text_support(INTENTS), encoder, "linear")
    text_app = [p.probabilities for p in classify_texts(text, encoder, SNIPPET_TEXTS)[0]]
    folders = {name: tmp_path_factory.mktemp(name) for name in ("image_saved", "text_saved", "image_onnx", "text_onnx")}
    for name in ("image_saved", "image_onnx"):
        shutil.copy(QUERY_IMAGE, folders[name] / "photo.jpg")  # the file name the image snippets read
    started = {}
    for name, modality, classifier, app in (("image_saved", IMAGE, image, image_app),
                                            ("text_saved", TEXT, text, text_app)):
        saved = classifier.save(folders[name] / f"fewshot-{modality.name}-classifier.safetensors")
        shown, _ = save_snippet(SimpleNamespace(modality=modality, classifier=classifier, fitted_at=0.0), str(saved))
        started[name] = Run(shown.value, folders[name]), app
    exported = export_image_onnx(image, backbone, folders["image_onnx"] / "fewshot-linear-classifier.onnx")
    started["image_onnx"] = Run(exported.snippet(), folders["image_onnx"]), image_app
    exported = export_text_onnx(text, encoder, folders["text_onnx"] / "fewshot-linear-text-onnx.zip")
    started["text_onnx"] = Run(exported.snippet(), folders["text_onnx"]), text_app
    yield started
    for run, _ in started.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


@pytest.mark.parametrize("snippet", ["image_onnx", "image_saved"])
def test_the_image_snippets_the_app_shows_print_its_probabilities(runs, snippet):
    """The onnxruntime code shown after an ONNX export, and the Python shown after a save."""
    run, app = runs[snippet]
    lines = run.lines()
    assert len(lines) == 1
    label, probabilities = printed_probabilities(lines[0])
    assert_close(probabilities, app[0], TOLERANCE[snippet])
    assert label == max(app[0], key=app[0].get)


@pytest.mark.parametrize("snippet", ["text_onnx", "text_saved"])
def test_the_text_snippets_the_app_shows_print_its_probabilities(runs, snippet):
    run, app = runs[snippet]
    lines = run.lines()
    assert len(lines) == len(SNIPPET_TEXTS)
    for line, text, want in zip(lines, SNIPPET_TEXTS, app):
        if snippet == "text_onnx":
            assert line.startswith(f"{text} -> ")
        label, probabilities = printed_probabilities(line)
        assert_close(probabilities, want, TOLERANCE[snippet])
        assert label == max(want, key=want.get)
