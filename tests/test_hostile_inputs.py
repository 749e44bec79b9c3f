"""Hostile inputs that used to reach the incident message: each now gets a refusal that says what to do.

Handles with whitespace around them, the webcam events given arguments of the wrong kind, saved
classifiers whose header is forged (with a checksum that matches: anyone can compute it), JSONL
nested past Python's recursion limit, and long texts cut without a note.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gradio as gr
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from hostile import png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.limits import Limits
from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.core.classifier_file import HEADER_FIELDS, checksum
from fewshot_demo.data.texts import read_text_table
from fewshot_demo.ui import webcam

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "examples" / "images" / "animals"
ROWS = Limits.ROWS
INCIDENT = "incident"
#: Past CPython's recursion limit for json.loads (about 1000 levels), cheap to write.
DEEP = 100_000


def _refused(call, message: str) -> str:
    """``call()`` raises a gradio_client AppError carrying ``message``, not the incident message."""
    with pytest.raises(AppError) as raised:
        call()
    text = str(raised.value)
    assert INCIDENT not in text and message in text, text
    return text


# ------------------------------------------------------------------------------------------ handles
def test_a_handle_with_whitespace_around_it_is_the_same_handle_and_an_odd_one_is_refused(client):
    paths = [p for d in sorted((ANIMALS / "support").iterdir()) for p in sorted(d.iterdir())[:1]]
    handle = client.predict([handle_file(str(p)) for p in paths], [p.parent.name for p in paths],
                            api_name="/fit_images")["handle"]
    query = handle_file(str(sorted((ANIMALS / "query").glob("*/*"))[0]))
    for spelled in (handle + " ", handle + "\n", "\t" + handle + "\r\n"):
        assert len(client.predict(spelled, [query], api_name="/predict")["predictions"]) == 1
    for odd in (handle + "\x00", handle[:-1], handle + "x", "", "\u200b" + handle):
        _refused(lambda odd=odd: client.predict(odd, [query], api_name="/predict"), "unknown or expired handle")
    assert client.predict(handle + "\n", api_name="/forget")["forgotten"] is True
    _refused(lambda: client.predict(handle, [query], api_name="/predict"), "unknown or expired handle")


# ------------------------------------------------------------------------------------------ the webcam
def _class_values(tmp_path: Path) -> list:
    (tmp_path / "red.png").write_bytes(png())
    return ["cat", "dog", *[""] * (ROWS - 2), [str(tmp_path / "red.png")], None, *[None] * (ROWS - 2)]


@pytest.mark.parametrize("frames", ["abc", None, "nan", math.inf, [3], {"n": 3}, True])
def test_the_webcam_recording_refuses_a_frame_count_that_is_not_a_number(tmp_path, frames):
    with pytest.raises(UserInputError, match="the number of frames to record must be a number"):
        webcam.start_burst(0, frames, 2, *_class_values(tmp_path))


@pytest.mark.parametrize("target", ["x", -1, 2, 0.5, [0], math.nan])
def test_the_webcam_and_clipboard_refuse_a_class_that_is_not_a_visible_one(tmp_path, target):
    values = _class_values(tmp_path)
    with pytest.raises(UserInputError, match="choose one of the visible classes to record into|must be a number"):
        webcam.start_burst(target, 3, 2, *values)
    with pytest.raises(UserInputError, match="choose one of the visible classes to add|must be a number"):
        webcam.add_capture(str(tmp_path / "red.png"), target, 2, *values[ROWS:])


def test_the_webcam_accepts_numbers_as_the_page_sends_them(tmp_path):
    burst, message = webcam.start_burst("1", "4.0", 2, *_class_values(tmp_path))
    assert (burst.target, burst.wanted) == (1, 4) and "Recording 4 frames into dog" in message
    assert webcam.start_burst(None, 1e9, 2, *_class_values(tmp_path))[0].wanted == webcam.MAX_BURST
    choices = webcam.capture_targets("2", "cat", None, "bird")[0].choices
    assert [label for label, _ in choices] == ["cat", "Class 2"]


def test_upstream_a_slider_fails_on_a_string_with_a_type_error():
    for payload in ("abc", None):
        with pytest.raises(TypeError):
            gr.Slider(1, 30).preprocess(payload)


@pytest.mark.parametrize("frames", ["abc", "4", [3], {"n": 3}, None])
def test_the_recording_event_refuses_a_frame_count_through_the_api(client, frames):
    names = ["cat", "dog", *[""] * (ROWS - 2)]
    text = _refused(lambda: client.predict(0, frames, *names, *[None] * ROWS, api_name="/image_record"), "a number")
    assert "TypeError" not in text and "the number of frames to record" in text


# ------------------------------------------------------------------------------------------ saved classifiers
def _saved(tmp_path: Path) -> tuple[dict, dict]:
    """The header (without checksum) and tensors of a real saved classifier."""
    classifier = FewShotClassifier("linear", ["a", "b"], torch.randn(4, 8), torch.tensor([0, 0, 1, 1]),
                                   "efficientnet_lite0")
    path = classifier.save(tmp_path / "saved.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        header = json.loads(handle.metadata()["fewshot_demo"])
    header.pop("checksum")
    return header, load_file(str(path))


def _forge(tmp_path: Path, header: dict, tensors: dict) -> Path:
    """A file with ``header`` and a checksum that matches it."""
    path = tmp_path / "forged.safetensors"
    signed = {**header, "checksum": checksum(tensors, header)}
    save_file(tensors, str(path), metadata={"fewshot_demo": json.dumps(signed)})
    return path


@pytest.mark.parametrize("field, value", [
    ("encoder_id", None), ("encoder_id", 7), ("encoder_id", ""), ("method", []), ("method", None),
    ("method", {"a": 1}), ("class_names", None), ("class_names", "ab"), ("class_names", [1, 2]),
    ("feature_dim", "8"), ("feature_dim", True), ("feature_dim", -1), ("learner_options", "x"),
    ("learner_options", [1]), ("learner_config", 3),
])
def test_a_forged_header_field_is_refused_by_name(tmp_path, field, value):
    header, tensors = _saved(tmp_path)
    header[field] = value
    with pytest.raises(UserInputError, match=f"has '{field}' = .*save the classifier again"):
        FewShotClassifier.load(_forge(tmp_path, header, tensors))


def test_a_forged_header_missing_a_field_or_nested_too_deeply_is_refused(tmp_path):
    header, tensors = _saved(tmp_path)
    del header["encoder_id"]
    with pytest.raises(UserInputError, match="lacks its 'encoder_id' field"):
        FewShotClassifier.load(_forge(tmp_path, header, tensors))
    path = tmp_path / "deep.safetensors"
    save_file(tensors, str(path), metadata={"fewshot_demo": "[" * DEEP + "]" * DEEP})
    with pytest.raises(UserInputError, match="not a saved few-shot classifier"):
        FewShotClassifier.load(path)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*HEADER_FIELDS, "format_version"]), json_values, min_size=1, max_size=3))
def test_any_forged_header_with_a_valid_checksum_loads_or_is_refused_readably(tmp_path, changes):
    header, tensors = _saved(tmp_path)
    header.update(changes)
    try:
        loaded = FewShotClassifier.load(_forge(tmp_path, header, tensors))
    except UserInputError as error:
        assert "save the classifier again" in str(error) or "select" in str(error), error
        return
    assert loaded.class_names == ["a", "b"] and isinstance(loaded.encoder_id, str)


# ------------------------------------------------------------------------------------------ nested JSONL
def test_a_jsonl_line_nested_past_the_recursion_limit_is_refused_with_its_line(tmp_path):
    deep = '{"text": ' + "[" * DEEP + "]" * DEEP + ', "label": "a"}'
    with pytest.raises(UserInputError, match="line 2 of deep.jsonl is not valid JSON \\(nested too deeply"):
        read_text_table(('{"text": "hi", "label": "a"}\n' + deep).encode(), "deep.jsonl")
    with pytest.raises(UserInputError, match="line 1 of x.jsonl: 'text' is an array; give it as a string"):
        read_text_table(b'{"text": [[["hi"]]], "label": "a"}', "x.jsonl")
    with pytest.raises(UserInputError, match="line 1 of x.jsonl: 'label' is an object"):
        read_text_table(b'{"text": "hi", "label": {"a": 1}}', "x.jsonl")
    assert read_text_table(b'{"text": 12, "label": "a"}\n{"text": "b", "label": "c"}', "x.jsonl").texts == ["12", "b"]


def test_nested_jsonl_is_refused_by_every_endpoint_that_reads_tables(client, tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": ' + "[" * DEEP + "]" * DEEP + ', "label": "a"}\n')
    _refused(lambda: client.predict(handle_file(str(path)), api_name="/text_upload"), "nested too deeply")
    _refused(lambda: client.predict(None, None, "linear", handle_file(str(path)), api_name="/fit_texts"),
             "nested too deeply")
    _refused(lambda: client.submit("upload", handle_file(str(path)), 2, [1], 10, ["protonet"],
                                   api_name="/compare_run").result(), "nested too deeply")


# ------------------------------------------------------------------------------------------ cut texts
def test_a_text_longer_than_the_limit_says_so_in_every_answer(client):
    long_query = "word " * (Limits().max_text_chars // 5 + 100)
    answer = client.predict(["hello there", "will it rain"], ["greeting", "weather"], [long_query, "hi"],
                            api_name="/predict_texts")
    assert any("cut to that length" in note for note in answer["notes"]), answer["notes"]
    fitted = client.predict(["hello there", "will it rain"], ["greeting", "weather"], api_name="/fit_texts")
    answer = client.predict(fitted["handle"], [long_query], api_name="/predict")
    assert any("cut to that length" in note for note in answer["notes"]), answer["notes"]
    classes = [("greeting", "hello there\ngood morning"), ("weather", "will it rain?\nis it hot")]
    padded = classes + [("", "")] * (ROWS - len(classes))
    status = client.predict("minilm", "linear", 5, "contrastive", long_query + "\nhi", *[n for n, _ in padded],
                            *[b for _, b in padded], api_name="/text_classify")[0]
    assert "cut to that length" in status, status
    short = client.predict(["hello there", "will it rain"], ["greeting", "weather"], ["hi"], api_name="/predict_texts")
    assert not any("cut" in note for note in short["notes"])
