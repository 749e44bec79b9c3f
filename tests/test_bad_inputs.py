"""Hostile inputs through the API, on all three tabs and the public endpoints.

Each one gets a readable message (no traceback, no server path, not the generic "something went
wrong"), the app answers the next request, and what the session holds (the fitted classifiers it
had before) is still there afterwards.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import hostile
import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from fewshot_demo.config.limits import Limits
from fewshot_demo.core.classifier import FewShotClassifier

MAX_CLASSES = Limits.ROWS
ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "examples" / "images" / "animals"
INTENTS = ROOT / "examples" / "text" / "intents" / "support.csv"
PRIVATE = ("/tmp/", "/work/", "/root/", "/home/", "site-packages")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    import torch

    saved = FewShotClassifier("linear", ["a", "b"], torch.randn(4, 384), torch.tensor([0, 0, 1, 1]), "minilm")
    made = {
        "red.png": hostile.png("red"), "blue.png": hostile.png("blue"), "bomb.png": hostile.png_bomb(),
        "report.jpg": b"%PDF-1.4 this is not a picture", "empty.png": b"",
        "truncated.jpg": hostile.jpeg((64, 64))[:200], "clear.png": hostile.png(mode="RGBA"),
        "latin1.csv": "text,label\ncafé crème,drinks\nthé,drinks\n".encode("latin-1"),
        "binary.csv": b"\x00\x01\x02text,label\x00",
        "columns.csv": b"sentence,category\nhello,greeting\n",
        "broken.jsonl": b'{"text": "hi", "label": "greeting"}\n{"text": "oops"\n',
        "list.jsonl": b'[1, 2, 3]\n',
        "program.exe": b"MZ\x90\x00",
        "huge_field.csv": b'text,label\n"' + b"x" * 140_000 + b'",a\n',
        "classes55.csv": ("text,label\n" + "".join(f"example {i},class {i}\n" for i in range(55))).encode(),
        "tiny.csv": b"text,label\nhello,greeting\nrain,weather\n",
        "corrupt.zip": hostile.corrupt_zip(), "encrypted.zip": hostile.encrypted_zip(),
        "method99.zip": hostile.unknown_method_zip(), "notes.txt": b"just some notes",
        "escape.zip": hostile.zip_bytes({"../../evil/a.png": hostile.png()}),
        "oneclass.zip": hostile.zip_bytes({"a/1.png": hostile.png(), "a/2.png": hostile.png("blue")}),
        "fake.zip": b"PK\x03\x04 not really",
        "junk.safetensors": b"\x00" * 64,
    }
    paths = {name: hostile.write(folder, name, data) for name, data in made.items()}
    paths["text.safetensors"] = saved.save(folder / "text.safetensors")
    paths["many"] = [hostile.write(folder, f"q{i}.png", hostile.png((i, 0, 0))) for i in range(MAX_CLASSES + 13)]
    return paths


@pytest.fixture(scope="module")
def session(app_url) -> Client:
    """A session that already fitted an image and a text classifier: hostile calls must not lose them."""
    client = Client(app_url, verbose=False)
    classes = [(d.name, sorted(d.iterdir())) for d in sorted((ANIMALS / "support").iterdir())]
    _image(client, classes, [sorted((ANIMALS / "query").glob("*/*"))[0]], method="linear")
    _text(client, [("greeting", "hello there\ngood morning"), ("weather", "will it rain?\nis it hot")], "hi")
    return client


def _image(client, classes, queries=(), capture=None, method="protonet", backbone="efficientnet_lite0", steps=5):
    names = [name for name, _ in classes] + [""] * (MAX_CLASSES - len(classes))
    items = [[handle_file(str(p)) for p in paths] or None for _, paths in classes] + [None] * (MAX_CLASSES - len(classes))
    return client.predict(backbone, method, steps, True, 0.5, [handle_file(str(q)) for q in queries] or None,
                          handle_file(str(capture)) if capture else None, *names, *items, 5, 1.0,
                          api_name="/image_classify")


def _text(client, classes, queries, method="linear", encoder="minilm"):
    padded = classes + [("", "")] * (MAX_CLASSES - len(classes))
    return client.predict(encoder, method, 5, "contrastive", queries, *[n for n, _ in padded], *[b for _, b in padded],
                          api_name="/text_classify")


def _compare(client, source, upload, methods=("protonet",), shots=(1,), episodes=10, way=2):
    upload = handle_file(str(upload)) if upload is not None else None
    return client.submit(source, upload, way, list(shots), episodes, list(methods), api_name="/compare_run").result()


def _two(files, a="red.png", b="blue.png"):
    return [("cat", [files[a]]), ("dog", [files[b]])]


IMAGE_CASES = {
    "no classes": (lambda c, f: _image(c, [], [f["red.png"]]), "at least 2 classes|class 1 has no name"),
    "one class": (lambda c, f: _image(c, [("cat", [f["red.png"]])], [f["red.png"]]), "at least 2 classes"),
    "same name twice": (lambda c, f: _image(c, [("Cat", [f["red.png"]]), ("cat ", [f["blue.png"]])], [f["red.png"]]),
                        "two classes are named"),
    "files without a name": (lambda c, f: _image(c, [("cat", [f["red.png"]]), ("", [f["blue.png"]])], [f["red.png"]]),
                             "has no name"),
    "name of 200 characters": (lambda c, f: _image(c, [("c" * 200, [f["red.png"]]), ("dog", [f["blue.png"]])],
                                                   [f["red.png"]]), "keep names under 60"),
    "class without images": (lambda c, f: _image(c, [("cat", [f["red.png"]]), ("dog", [])], [f["red.png"]]),
                             "has no usable images"),
    "support file not an image": (lambda c, f: _image(c, _two(f, b="report.jpg"), [f["red.png"]]), "report.jpg is not an image"),
    "empty support file": (lambda c, f: _image(c, _two(f, b="empty.png"), [f["red.png"]]), "empty.png"),
    "truncated support photo": (lambda c, f: _image(c, _two(f, b="truncated.jpg"), [f["red.png"]]), "truncated.jpg"),
    "bomb in the support set": (lambda c, f: _image(c, _two(f, b="bomb.png"), [f["red.png"]]), "megapixels"),
    "fully transparent support": (lambda c, f: _image(c, _two(f, b="clear.png"), [f["red.png"]]), "fully transparent"),
    "no query": (lambda c, f: _image(c, _two(f)), "add at least one query image"),
    "bomb as the only query": (lambda c, f: _image(c, _two(f), [f["bomb.png"]]), "megapixels"),
    "bomb from the webcam": (lambda c, f: _image(c, _two(f), capture=f["bomb.png"]), "megapixels"),
    "pdf from the clipboard": (lambda c, f: _image(c, _two(f), capture=f["report.jpg"]), "report.jpg"),
    "33 query files": (lambda c, f: _image(c, _two(f), f["many"]), "33 images; at most 32"),
    "unknown method": (lambda c, f: _image(c, _two(f), [f["red.png"]], method="magic"), "magic"),
    "inner steps out of bounds": (lambda c, f: _image(c, _two(f), [f["red.png"]], method="maml", steps=10**6),
                                  "greater than maximum"),
    "unknown backbone": (lambda c, f: _image(c, _two(f), [f["red.png"]], backbone="vgg99"), "vgg99"),
    "hub backbone offline": (lambda c, f: _image(c, _two(f), [f["red.png"]], backbone="resnet50"),
                             "bundled default 'efficientnet_lite0'"),
    "load junk as a classifier": (lambda c, f: c.predict(handle_file(str(f["junk.safetensors"])), "efficientnet_lite0",
                                                         api_name="/image_load"), "not a saved classifier"),
    "load a text classifier": (lambda c, f: c.predict(handle_file(str(f["text.safetensors"])), "efficientnet_lite0",
                                                      api_name="/image_load"), "select 'minilm'"),
    "unknown example set": (lambda c, f: c.predict("../../etc", api_name="/image_load_example"),
                            "not in the list of choices"),
}

TEXT_CASES = {
    "no query": (lambda c, f: _text(c, [("a", "x"), ("b", "y")], " \n\t\n"), "type at least one query"),
    "201 queries": (lambda c, f: _text(c, [("a", "x"), ("b", "y")], "\n".join(f"q{i}" for i in range(201))), "at most 200"),
    "examples without a name": (lambda c, f: _text(c, [("a", "x"), ("", "y")], "q"), "has examples but no name"),
    "name without examples": (lambda c, f: _text(c, [("a", "x"), ("b", "  ")], "q"), "has no example text"),
    "one class": (lambda c, f: _text(c, [("a", "x\ny")], "q"), "at least two classes"),
    "unknown encoder": (lambda c, f: _text(c, [("a", "x"), ("b", "y")], "q", encoder="gpt-9"), "gpt-9"),
    "hub encoder offline": (lambda c, f: _text(c, [("a", "x"), ("b", "y")], "q", encoder="bert-base-uncased"),
                            "bundled default 'minilm'"),
    "upload not UTF-8": (lambda c, f: c.predict(handle_file(str(f["latin1.csv"])), api_name="/text_upload"), "not UTF-8"),
    "upload binary": (lambda c, f: c.predict(handle_file(str(f["binary.csv"])), api_name="/text_upload"), "binary file"),
    "upload without columns": (lambda c, f: c.predict(handle_file(str(f["columns.csv"])), api_name="/text_upload"),
                               "columns 'text' and 'label'"),
    "upload broken JSONL": (lambda c, f: c.predict(handle_file(str(f["broken.jsonl"])), api_name="/text_upload"),
                            "line 2 of broken.jsonl is not valid JSON"),
    "upload JSONL of lists": (lambda c, f: c.predict(handle_file(str(f["list.jsonl"])), api_name="/text_upload"),
                              "not a JSON object"),
    "upload a program": (lambda c, f: c.predict(handle_file(str(f["program.exe"])), api_name="/text_upload"),
                         r"Invalid file type.*'\.csv', '\.tsv', '\.jsonl'"),
    "upload a 140 000-character cell": (lambda c, f: c.predict(handle_file(str(f["huge_field.csv"])), api_name="/text_upload"),
                                        "could not be read as CSV"),
    "upload 55 classes": (lambda c, f: c.predict(handle_file(str(f["classes55.csv"])), api_name="/text_upload"),
                          "55 classes is more than the 20"),
    "load junk as a classifier": (lambda c, f: c.predict(handle_file(str(f["junk.safetensors"])), "minilm",
                                                         api_name="/text_load"), "not a saved classifier"),
}

COMPARE_CASES = {
    "no method": (lambda c, f: _compare(c, "upload", f["tiny.csv"], methods=()), "choose at least one method"),
    "no K-shot": (lambda c, f: _compare(c, "upload", f["tiny.csv"], shots=()), "at least one K-shot"),
    "nine methods": (lambda c, f: _compare(c, "upload", f["tiny.csv"], methods=["linear", "baselinepp", "protonet", "maml",
                     "fomaml", "reptile", "matchingnet", "protonet_plain", "finetune"]), "at most 8"),
    "unknown data set": (lambda c, f: _compare(c, "imagenet", None), "imagenet is not in the list of choices"),
    "upload missing": (lambda c, f: _compare(c, "upload", None), "upload a zip of class folders"),
    "upload a text file": (lambda c, f: _compare(c, "upload", f["notes.txt"]), r"Invalid file type.*'\.zip'"),
    "corrupt zip": (lambda c, f: _compare(c, "upload", f["corrupt.zip"]), "corrupt.zip is damaged"),
    "encrypted zip": (lambda c, f: _compare(c, "upload", f["encrypted.zip"]), "password-protected"),
    "zip of an unknown method": (lambda c, f: _compare(c, "upload", f["method99.zip"]), "compression method"),
    "zip escaping its folder": (lambda c, f: _compare(c, "upload", f["escape.zip"]), "unsafe path"),
    "zip that is not one": (lambda c, f: _compare(c, "upload", f["fake.zip"]), "not a valid zip"),
    "zip of one class": (lambda c, f: _compare(c, "upload", f["oneclass.zip"]), "at least 2 classes"),
    "too few texts for the episodes": (lambda c, f: _compare(c, "upload", f["tiny.csv"], shots=(5,)), "5-shot|too few|not enough"),
    "one-way episodes": (lambda c, f: _compare(c, "upload", f["tiny.csv"], way=1), "less than minimum|at least 2"),
    "details before any run": (lambda c, f: Client(c.src, verbose=False).predict(0, api_name="/compare_details"),
                               "run a comparison first|not in the list of choices"),
}

API_CASES = {
    "a server path instead of a file": (lambda c, f: c.predict(["/etc/passwd"], ["a"], api_name="/fit_images"),
                                        "as an uploaded file"),
    "labels that do not match": (lambda c, f: c.predict([handle_file(str(f["red.png"]))], ["a", "b"], api_name="/fit_images"),
                                 "1 images but 2 labels"),
    "options that are not an object": (lambda c, f: c.predict(["a", "b"], ["x", "y"], ["q"], "linear", None, [1, 2],
                                                              api_name="/predict_texts"), "options must be a JSON object"),
    "a made-up handle": (lambda c, f: c.predict("x" * 32, ["q"], api_name="/predict"), "unknown or expired handle"),
    "texts as one string": (lambda c, f: c.predict("hello", ["x"], api_name="/fit_texts"), "list of strings"),
}

CASES = [pytest.param(tab, name, call, message, id=f"{tab}: {name}")
         for tab, cases in (("image", IMAGE_CASES), ("text", TEXT_CASES), ("compare", COMPARE_CASES), ("api", API_CASES))
         for name, (call, message) in cases.items()]


def test_there_are_at_least_40_hostile_inputs():
    assert len(CASES) >= 40


@pytest.mark.parametrize("tab, name, call, message", CASES)
def test_a_hostile_input_gets_a_readable_message_and_the_app_answers_the_next_request(session, files, tab, name, call,
                                                                                       message):
    with pytest.raises(AppError) as raised:
        call(session, files)
    text = str(raised.value)
    assert re.search(message, text), text
    assert "Traceback" not in text and "upstream Gradio app" not in text and "Something went wrong" not in text, text
    assert not any(folder in text for folder in PRIVATE), text
    assert len(text) < 800, text
    assert session.predict(api_name="/warmup") == "ready"


def test_lone_surrogates_are_read_not_refused(app_url):
    """JSON may carry a lone UTF-16 surrogate (no UTF-8 text can): it becomes U+FFFD and the texts are classified."""
    body = ('{"texts": ["hello \\ud800 there", "good morning", "will it rain?", "is it \\udfff hot"], '
            '"labels": ["greeting", "greeting", "weather\\ud83d", "weather\\ud83d"], "queries": ["hi \\udc00!"]}')
    with httpx.Client(base_url=app_url, timeout=60) as http:
        event = http.post("gradio_api/call/v2/predict_texts", content=body,
                          headers={"content-type": "application/json"}).json()["event_id"]
        answer = http.get(f"gradio_api/call/predict_texts/{event}").text
    result = json.loads(answer.split("data: ", 1)[1].splitlines()[0])[0]
    assert result["classes"] == ["greeting", "weather\ufffd"] and result["predictions"][0]["query"] == "hi \ufffd!"


def test_the_session_keeps_what_it_had_after_all_of_them(session):
    saved = session.predict(api_name="/image_save")  # the image classifier fitted before the hostile calls
    assert saved.endswith(".safetensors")
    text, table, _plot = session.predict("minilm", api_name="/text_self_check")
    assert "leave-one-out" in text and table["headers"][1:] == ["greeting", "weather"]


def test_archives_written_by_real_tools_still_work(session, tmp_path):
    """The zip checks refuse the damaged ones above, not ordinary ones (stored, deflated, with folders)."""
    archive = tmp_path / "stored.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        for path in sorted((ANIMALS / "support").glob("*/*")):
            zipped.write(path, f"animals/{path.parent.name}/{path.name}")
        zipped.writestr("animals/", "")
        zipped.writestr("__MACOSX/animals/._bird", b"\0")
    outputs = _compare(session, "upload", archive, methods=("protonet",), shots=(1,), episodes=10)
    assert "Done" in outputs[0]
