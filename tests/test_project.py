"""Project files: a round trip keeps classes, order, method, options, encoder and items; foreign, damaged,
oversized, newer and unsafe files are refused with what to do; fsd.fit, /fit_images, /fit_texts and the
comparison's upload read the same file."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from gradio_client import handle_file

import fewshot_demo as fsd
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import settings
from fewshot_demo.core.project import (
    MANIFEST,
    PROJECT_VERSION,
    Project,
    labelled_from_upload,
    open_upload,
    write_project,
)
from fewshot_demo.data.texts import read_text_table
from fewshot_demo.data.zips import data_from_upload, zip_classes

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "examples" / "images" / "animals"
TOPICS = ROOT / "examples" / "text" / "topics"


def _animals(method: str = "maml", options: dict | None = None) -> Project:
    # Classes on purpose not in alphabetical order: the project keeps the row order.
    classes = [(name, sorted((ANIMALS / "support" / name).iterdir())) for name in ("fish", "bird", "bovine")]
    queries = sorted(ANIMALS.glob("query/*/*"))
    return Project("image", classes, method, {"inner_steps": 2, "inner_lr": None} if options is None else options,
                   queries=queries)


def _topics() -> Project:
    table = read_text_table(TOPICS / "support.csv")
    classes: dict[str, list[str]] = {}
    for text, label in zip(table.texts, table.labels):
        classes.setdefault(label, []).append(text)
    ordered = list(reversed(classes.items()))
    return Project("text", ordered, "finetune", {"steps": 3, "loss": "cross_entropy"},
                   queries=["what a match | sport", "the new phone is out"])


def _rewritten(source: Path, target: Path, manifest: dict | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """A copy of a project zip with its manifest replaced and members added."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for member in original.infolist():
            data = original.read(member)
            if member.filename == MANIFEST and manifest is not None:
                data = json.dumps(manifest).encode()
            copy.writestr(member, data)
        for name, data in (extra or {}).items():
            copy.writestr(name, data)
    return target


def _manifest(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(MANIFEST))


# ---- round trips ---------------------------------------------------------------------------------
def test_an_image_project_comes_back_as_it_was_saved(tmp_path):
    saved = _animals()
    path = write_project(saved, tmp_path / "animals.zip")
    manifest = _manifest(path)
    assert manifest["format"] == "fewshot-demo-project" and manifest["version"] == PROJECT_VERSION
    assert manifest["app_version"] == fsd.__version__ and manifest["created"].endswith("Z")
    with open_upload(path) as opened:
        assert opened.modality == "image" and opened.method == "maml" and opened.encoder_id == "efficientnet_lite0"
        assert opened.options == {"inner_steps": 2, "inner_lr": None}
        assert [name for name, _ in opened.classes] == ["fish", "bird", "bovine"]
        for (_, before), (_, after) in zip(saved.classes, opened.classes):
            assert [p.read_bytes() for p in before] == [p.read_bytes() for p in after]  # same files, same order
        assert [p.read_bytes() for p in saved.queries] == [p.read_bytes() for p in opened.queries]
        kept = opened.copied_to(tmp_path / "kept")
    assert all(Path(item).is_file() for _, items in kept.classes for item in items)  # outlive the block


def test_a_text_project_comes_back_as_it_was_saved(tmp_path):
    saved = _topics()
    path = write_project(saved, tmp_path / "topics.zip")
    with open_upload(path) as opened:
        assert opened.classes == saved.classes and opened.queries == saved.queries
        assert (opened.method, opened.options) == ("finetune", {"steps": 3, "loss": "cross_entropy"})
        assert opened.encoder_id == "minilm:layers" and opened.notes == ()


def test_fsd_fit_reads_a_project_with_its_method_and_options(tmp_path, single_thread):
    path = write_project(_animals("protonet", {}), tmp_path / "animals.zip")
    from_project = fsd.fit(path)
    from_folder = fsd.fit(ANIMALS / "support")
    assert from_project.method == "protonet" and from_project.class_names == ["fish", "bird", "bovine"]
    queries = sorted(str(p) for p in ANIMALS.glob("query/*/*"))
    assert [p.label for p in from_project.predict(queries)] == [p.label for p in from_folder.predict(queries)]
    options = write_project(_animals("maml", {"inner_steps": 1, "inner_lr": 0.05}), tmp_path / "maml.zip")
    fitted = fsd.fit(options)
    assert fitted.method == "maml" and fitted.fitted.learner_options == {"inner_steps": 1, "inner_lr": 0.05}
    assert fsd.fit(options, method="linear").method == "linear"  # a named method drops the project's options
    with pytest.raises(UserInputError, match="inner_steps"):
        fsd.fit(options, method="maml", inner_steps=10_000)  # options given here win, and are checked


def test_the_comparison_reads_a_project_and_a_plain_zip(tmp_path):
    path = write_project(_animals(), tmp_path / "animals.zip")
    data = labelled_from_upload(path)
    assert data.modality == "image" and data.class_names == ["fish", "bird", "bovine"] and len(data.items) == 15
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        for file in sorted(ANIMALS.glob("support/*/*")):
            archive.write(file, file.relative_to(ANIMALS / "support"))
    assert labelled_from_upload(plain).class_names == ["bird", "bovine", "fish"]
    with open_upload(plain) as opened:  # no manifest: class folders, the default method, and a note saying so
        assert opened.method == "protonet" and "no fewshot-project.json" in opened.notes[0]
    # The readers of plain class-folder zips do not take a project's folders for classes.
    with pytest.raises(UserInputError, match="is a project file: open it with Open project"):
        data_from_upload(path)
    with pytest.raises(UserInputError, match="is a project file: open it with Open project"), zip_classes(path):
        pass


# ---- refusals ------------------------------------------------------------------------------------
def test_a_newer_format_is_refused_with_what_to_do(tmp_path):
    path = write_project(_animals(), tmp_path / "animals.zip")
    newer = _rewritten(path, tmp_path / "newer.zip", _manifest(path) | {"version": PROJECT_VERSION + 1,
                                                                        "app_version": "9.0"})
    newer_message = r"saved by a newer fewshot-demo \(9.0, project format 2\).*Update the app"
    with pytest.raises(UserInputError, match=newer_message), open_upload(newer):
        pass


@pytest.mark.parametrize("change, message", [
    ({"format": "teachable-machine"}, "of another program, not a fewshot-demo project"),
    ({"method": "no_such_method"}, "uses a method this app does not have"),
    ({"encoder": "minilm:layers"}, "image encoder 'minilm:layers', which this app does not have"),
    ({"options": {"inner_steps": [1, 2]}}, "options must be names with numbers"),
    ({"classes": [{"name": "fish", "folder": "support/../../etc"}]}, "names an unsafe folder"),
    ({"classes": [{"name": "a", "folder": "support/01-a"}, {"name": "A", "folder": "support/02-a"}]}, "two classes"),
])
def test_a_manifest_that_does_not_fit_is_refused(tmp_path, change, message):
    path = write_project(_animals(), tmp_path / "animals.zip")
    broken = _rewritten(path, tmp_path / "broken.zip", _manifest(path) | change)
    with pytest.raises(UserInputError, match=message), open_upload(broken):
        pass


def test_foreign_corrupt_unsafe_and_oversized_files_are_refused(tmp_path, monkeypatch):
    path = write_project(_animals(), tmp_path / "animals.zip")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "notes.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    garbled = tmp_path / "garbled.zip"
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(garbled, "w") as copy:
        for member in original.infolist():
            copy.writestr(member, b"{not json" if member.filename == MANIFEST else original.read(member))
    traversal = _rewritten(path, tmp_path / "traversal.zip", extra={"../../evil.jpg": b"x"})
    cases = [(truncated, "not a valid zip|damaged"), (foreign, "neither a project .* nor a zip of class folders"),
             (garbled, "is not valid JSON"), (traversal, "unsafe path"),
             (tmp_path / "animals.csv", "not a project file")]
    for bad, message in cases:
        with pytest.raises(UserInputError, match=message), open_upload(bad):
            pass
    monkeypatch.setenv("FEWSHOT_MAX_UPLOAD_MB", "0.05")
    settings.cache_clear()
    with pytest.raises(UserInputError, match="files up to 0.05 MB are accepted"), open_upload(path):
        pass
    monkeypatch.setenv("FEWSHOT_MAX_UPLOAD_MB", "25")
    monkeypatch.setenv("FEWSHOT_MAX_IMAGES_PER_CLASS", "4")
    settings.cache_clear()
    with pytest.raises(UserInputError, match="class 'fish' has 5 images; this app takes at most 4"), open_upload(path):
        pass


def test_a_project_that_cannot_be_written_says_why(tmp_path):
    with pytest.raises(UserInputError, match="two classes of the project are named"):
        write_project(Project("text", [("a", ["x"]), ("A", ["y"])], "linear"), tmp_path / "p.zip")
    with pytest.raises(UserInputError, match="not an image file"):
        write_project(Project("image", [("a", ["notes.txt"]), ("b", [])], "protonet"), tmp_path / "p.zip")
    assert not (tmp_path / "p.zip").exists()


# ---- the web API ---------------------------------------------------------------------------------
def test_the_api_fits_on_a_project_file(client, tmp_path):
    images = write_project(_animals("protonet", {}), tmp_path / "animals.zip")
    fitted = client.predict([handle_file(str(images))], None, api_name="/fit_images")
    assert fitted["method"] == "protonet" and fitted["classes"] == ["fish", "bird", "bovine"]
    assert fitted["support_per_class"] == {"fish": 5, "bird": 5, "bovine": 5}
    queries = sorted(ANIMALS.glob("query/*/*"))
    answer = client.predict(fitted["handle"], [handle_file(str(p)) for p in queries], api_name="/predict")
    local = fsd.fit(images).predict([str(p) for p in queries])  # the same file through the Python API
    assert [p["label"] for p in answer["predictions"]] == [p.label for p in local]
    assert answer["predictions"][0]["probabilities"]["bird"] == pytest.approx(local[0].probabilities["bird"], abs=1e-3)
    texts = write_project(_topics(), tmp_path / "topics.zip")
    fitted = client.predict(None, None, "protonet", handle_file(str(texts)), api_name="/fit_texts")
    assert fitted["method"] == "protonet" and fitted["classes"] == [name for name, _ in _topics().classes]
    with pytest.raises(Exception, match="holds texts; send it to /fit_texts"):
        client.predict([handle_file(str(texts))], None, api_name="/fit_images")
