"""The tabs' handlers called directly, without a server: sessions, methods, settings and cross-tab data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fewshot_demo.bench.comparison import method_label
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.limits import Limits
from fewshot_demo.methods.maml import AdaptationOptions
from fewshot_demo.ui import (
    compare_tab,
    events,
    image_gallery,
    image_tab,
    methods,
    text_tab,
    webcam,
)
from fewshot_demo.ui.support import panels, wiring
from fewshot_demo.ui.support import rows as class_rows
from fewshot_demo.ui.support.modality import SupportSession

MAX_CLASSES = Limits.ROWS

ROOT = Path(__file__).resolve().parents[1]
IMAGE_EXAMPLES = ROOT / "examples" / "images"


class Recorder:
    """Stands in for gr.Progress: records (fraction, description) calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction: float, desc: str | None = None) -> None:
        self.calls.append((fraction, desc or ""))


def _labels(cards: str) -> list[str]:
    return re.findall(r'data-label="([^"]+)"', cards)


def _image_classify(name: str, method: str = "protonet", session: SupportSession | None = None, **settings):
    """Load a bundled image example set through its handler and classify its queries."""
    rows = image_tab.load_example(name)
    class_values, queries = rows[1 : 1 + 2 * MAX_CLASSES], rows[-2]
    outputs = image_tab.classify(
        "efficientnet_lite0", method, settings.pop("inner_steps", 5), True, 0.5, queries, None, session,
        *class_values, **settings,
    )
    return outputs, [Path(q).parent.name for q in queries], class_values


def _text_classify(name: str, method: str = "linear", session: SupportSession | None = None, **settings):
    rows = text_tab.load_example(name)
    class_values, queries = rows[1 : 1 + 2 * MAX_CLASSES], rows[-1]
    return text_tab.classify(text_tab.DEFAULT_TEXT_ENCODER, method, settings.get("steps", 5),
                             settings.get("loss", "contrastive"), queries, session, *class_values,
                             progress=settings.get("progress", Recorder()))


# ---- fit, classify and self-check through a session, on every bundled example set ----------------
@pytest.mark.parametrize("name", image_tab.list_example_sets())
def test_image_examples_fit_classify_and_self_check_through_a_session(single_thread, name):
    (session, status, first, cards, _plot), truth, _ = _image_classify(name)
    assert isinstance(session, SupportSession) and session.modality is image_tab.IMAGE and not session.loaded
    labels = _labels(cards)
    assert len(labels) == len(truth) == len(session.query_labels) == len(session.query_features)
    assert sum(a == b for a, b in zip(labels, truth)) >= len(truth) - 2
    assert f"{len(truth)} queries classified" in status and max(first, key=first.get) == labels[0]
    text, table, figure = panels.self_check(session)
    assert "leave-one-out" in text and figure is not None
    assert table["headers"][1:] == session.classifier.class_names
    assert session.data.modality == "image" and session.data.class_names == session.classifier.class_names


@pytest.mark.parametrize("name", text_tab.list_example_sets())
def test_text_examples_fit_classify_and_self_check_through_a_session(name):
    session, status, first, cards = _text_classify(name)
    assert session.modality is text_tab.TEXT and session.classifier.method == "linear"
    labels = _labels(cards)
    assert len(labels) == len(session.query_names) > 0 and set(labels) <= set(session.classifier.class_names)
    assert max(first, key=first.get) == labels[0] and "queries classified" in status
    text, table, _figure = panels.self_check(session, text_tab.DEFAULT_TEXT_ENCODER)
    assert "leave-one-out" in text and table["headers"][1:] == session.classifier.class_names
    assert session.query_features.shape[0] == len(labels)  # the map shows the queries


def test_an_unchanged_support_set_reuses_the_fit_and_a_changed_one_refits(single_thread):
    (first, *_), _, class_values = _image_classify("animals")
    (again, *_), _, _ = _image_classify("animals", session=first)
    assert again.classifier is first.classifier and again.classified_at >= first.classified_at
    (other, *_), _, _ = _image_classify("animals", method="linear", session=first)
    assert other.classifier is not first.classifier and other.classifier.method == "linear"


def test_text_intents_are_recognised():
    _, _, _, cards = _text_classify("intents")
    expected = ["set_alarm", "weather", "play_music", "order_food", "make_call", "weather", "order_food", "play_music"]
    assert sum(a == b for a, b in zip(_labels(cards), expected)) >= 7


# ---- methods in the image tab -----------------------------------------------------------------
def test_image_finetune_classifies_and_shows_its_progress(single_thread):
    progress = Recorder()
    (session, status, _, cards, plot), truth, _ = _image_classify(
        "animals", method="finetune", finetune_steps=3, progress=progress,
    )
    assert session.classifier.method == "finetune" and len(session.classifier.learner.losses) == 3
    assert len(_labels(cards)) == len(truth)
    assert "Fine-tuned for 3 step(s)" in status and "fine-tuned backbone" in status
    assert [d for _, d in progress.calls if d.startswith("fine-tuning step")] == [f"fine-tuning step {i}/3" for i in (1, 2, 3)]
    fractions = [f for f, _ in progress.calls]
    assert fractions == sorted(fractions) and fractions[-1] <= 1
    text, _, _ = panels.self_check(session)
    assert "`linear` head on the frozen features" in text  # the stand-in, not 15 fine-tunes


@pytest.mark.parametrize("method", ["ptmap", "protonet_transductive"])
def test_transductive_methods_classify_in_the_image_tab(single_thread, method):
    (session, status, _, cards, _), truth, _ = _image_classify("mixed_5way", method=method)
    labels = _labels(cards)
    assert session.classifier.method == method and f"`{method}`" in status
    assert len(labels) == len(truth) and sum(a == b for a, b in zip(labels, truth)) >= len(truth) - 3


def test_maml_takes_the_adaptation_settings(single_thread):
    (session, status, _, _, plot), _, _ = _image_classify("animals", method="maml", inner_steps=2)
    assert session.classifier.learner_options["inner_steps"] == 2
    assert [int(s) for s in re.findall(r"(\d+): loss [0-9.]+ / acc", status)] == [0, 1, 2]
    assert plot.visible


def test_adabn_takes_the_share_of_the_users_statistics(single_thread):
    (session, status, _, cards, _), truth, _ = _image_classify("animals", method="adabn", target_weight=0.0)
    assert session.classifier.method == "adabn" and session.classifier.learner_options["target_weight"] == 0.0
    kept = _labels(cards)
    (adapted, *_), _, _ = _image_classify("animals", method="adabn", target_weight=1.0, session=session)
    assert adapted.classifier is not session.classifier  # a new share is a new fit
    assert adapted.classifier.learner_options["target_weight"] == 1.0
    # With none of the user's statistics, AdaBN is prototypes on the pretrained features.
    (_, _, _, plain_cards, _), _, _ = _image_classify("animals", method="protonet_plain")
    assert kept == _labels(plain_cards) and len(kept) == len(truth)


def test_settings_follow_the_registry():
    assert image_tab.method_options("maml", 3, False, 0.1, 7) == {"inner_steps": 3, "inner_lr": 0.1}
    assert image_tab.method_options("finetune", 3, True, 0.1, 7) == {"steps": 7}
    assert image_tab.method_options("baselinepp", 3, True, 0.1, 7) == {}  # its own steps are not the fine-tune's
    assert image_tab.method_options("adabn", 3, True, 0.1, 7, 0.25) == {"target_weight": 0.25}
    assert [group.visible for group in image_tab.settings_visibility("adabn")] == [False, False, True]
    assert [group.visible for group in image_tab.settings_visibility("protonet")] == [False, False, False]
    assert [group.visible for group in image_tab.settings_visibility("finetune")] == [False, True, False]
    assert text_tab.method_options("finetune", 0, "cross_entropy") == {"steps": None, "loss": "cross_entropy"}
    assert text_tab.method_options("linear", 9, "contrastive") == {}
    adaptation, finetune, domain = image_tab.settings_visibility("fomaml")
    assert adaptation.visible and not finetune.visible and not domain.visible
    assert text_tab.finetune_visibility("finetune").visible and not text_tab.finetune_visibility("baselinepp").visible
    slider = methods.option_slider(AdaptationOptions, "inner_steps", 5, 1)
    assert (slider.minimum, slider.maximum) == (0, 100)  # AdaptationOptions' bounds
    keys = [key for _, key in image_tab.method_choices("efficientnet_lite0")]
    assert keys[:3] == ["protonet", "maml", "linear"] and {"finetune", "ptmap"} <= set(keys)
    # Another backbone: methods that cannot run there are not offered, the choice falls back.
    offered = methods.offer_methods(image_tab.method_choices, "linear", "resnet50", "maml")
    assert "maml" not in [key for _, key in offered.choices] and offered.value == "linear"
    kept = methods.offer_methods(text_tab.method_choices, "linear", "minilm:cls", "finetune")
    assert kept.value == "finetune"


# ---- the text tab's classes reach the comparison ---------------------------------------------
def test_text_tab_classes_reach_the_comparison(single_thread):
    text_session, *_ = _text_classify("sentiment")
    data, upload = compare_tab.comparison_data(compare_tab.TAB_DATA, None, None, None, text_session)
    assert upload is None and data.name == "classes from the text tab"
    assert data.data.modality == "text" and data.class_names == ["positive", "negative", "neutral"]
    assert "in the text tab" in data.data.notes[0]
    outputs = list(compare_tab.run(compare_tab.TAB_DATA, None, 3, [1], 10, ["protonet", "linear"], None, None, text_session))
    status, table = outputs[-1][0], outputs[-1][1]
    assert "Done" in status and "in the text tab" in status
    assert {row[0] for row in table} == {method_label("protonet"), method_label("linear")}


def test_the_tab_classified_last_wins(single_thread):
    (image_session, *_), _, _ = _image_classify("animals")
    text_session, *_ = _text_classify("sentiment")
    data, _ = compare_tab.comparison_data(compare_tab.TAB_DATA, None, None, image_session, text_session)
    assert data.data.modality == "text"
    (image_again, *_), _, _ = _image_classify("animals", session=image_session)
    data, _ = compare_tab.comparison_data(compare_tab.TAB_DATA, None, None, image_again, text_session)
    assert data.data.modality == "image" and data.name == "classes from the image tab"
    with pytest.raises(ValueError, match="classify classes in the image or text tab first"):
        compare_tab.comparison_data(compare_tab.TAB_DATA, None, None, None, None)


def test_baseline_methods_are_compared_and_plotted(single_thread):
    (image_session, *_), _, _ = _image_classify("mixed_5way")
    outputs = list(compare_tab.run(compare_tab.TAB_DATA, None, 3, [1], 10, ["protonet_plain", "linear"], None, image_session))
    status, table, _reading, accuracy, curve, times = outputs[-1][:6]
    assert "Done" in status and {row[1] for row in table} == {"baseline", "transfer"}
    assert all(figure is not None for figure in (accuracy, curve, times))


def test_a_comparison_whose_data_cannot_load_leaves_no_stop_event_behind():
    runs = compare_tab.run(compare_tab.UPLOAD, None, 3, [1], 5, ["protonet"], None)
    assert "Loading" in next(runs)[0]
    with pytest.raises(ValueError, match="upload a zip of class folders"):
        next(runs)
    assert "default" not in compare_tab._CANCEL


def test_a_session_keeps_its_comparison_datas_features_not_its_preprocessed_pixels(single_thread):
    """A browser session keeps its last data set for the next run; AdaBN's preprocessed pixels
    (600 MB for 1000 images) would stay with it for the session's life."""
    (image_session, *_), _, _ = _image_classify("mixed_5way")
    outputs = list(compare_tab.run(compare_tab.TAB_DATA, None, 3, [1], 5, ["adabn"], None, image_session))
    assert "Done" in outputs[-1][0]
    session = outputs[-1][6]
    (pool,) = session.data._pools.values()
    assert list(pool.prepare._inputs) == ["features"]


# ---- class rows, save and load -----------------------------------------------------------------
def test_class_rows_add_remove_fill_and_clear():
    modality = text_tab.TEXT
    count, *visibility = class_rows.add_class(3)
    assert count == 4 and [v.visible for v in visibility[:5]] == [True] * 4 + [False]
    with pytest.raises(ValueError, match=f"at most {MAX_CLASSES} classes"):
        class_rows.add_class(MAX_CLASSES)
    filled = class_rows.fill_rows(modality, [("a", "x"), ("b", "y"), ("c", "z")])
    outputs = class_rows.remove_class(modality, 0, filled[0], *filled[1 : 1 + 2 * MAX_CLASSES])
    assert outputs[0] == 2 and outputs[1:4] == ["b", "c", ""]
    assert outputs[1 + MAX_CLASSES : 4 + MAX_CLASSES] == ["y", "z", ""]
    with pytest.raises(ValueError, match="more than the 20"):
        class_rows.fill_rows(modality, [(f"c{i}", "x") for i in range(MAX_CLASSES + 1)])
    cleared = class_rows.clear_all(image_tab.IMAGE, ("", None))
    assert cleared[0] is None and cleared[1] == class_rows.INITIAL_CLASSES and cleared[-2:] == ["", None]
    assert cleared[2 + MAX_CLASSES : 2 + 2 * MAX_CLASSES] == [None] * MAX_CLASSES


def test_save_then_load_then_classify_with_the_loaded_classifier(single_thread):
    (session, _, _, before, _), _, class_values = _image_classify("animals", method="linear")
    path = panels.save_classifier(session)
    loaded, message, count, *rows = panels.load_classifier(image_tab.IMAGE, path, "efficientnet_lite0")
    assert loaded.loaded and "Loaded a `linear` classifier" in message and count == 3
    assert rows[:3] == ["bird", "bovine", "fish"] and rows[MAX_CLASSES : MAX_CLASSES + 3] == [None] * 3
    queries = image_tab.load_example("animals")[-2]
    _, status, _, after, _ = image_tab.classify(
        "efficientnet_lite0", "linear", 5, True, 0.5, queries, None, loaded, *rows[: 2 * MAX_CLASSES],
    )
    assert "loaded classifier" in status and _labels(after) == _labels(before)
    with pytest.raises(ValueError, match="fit a classifier first"):
        panels.save_classifier(None)
    with pytest.raises(ValueError, match="classify once first"):
        panels.self_check(None)


def test_bad_input_raises_value_errors_the_wiring_turns_into_messages():
    rows = image_tab.load_example("animals")
    with pytest.raises(ValueError, match="add at least one query image"):
        image_tab.classify("efficientnet_lite0", "protonet", 5, True, 0.5, None, None, None, *rows[1 : 1 + 2 * MAX_CLASSES])
    with pytest.raises(ValueError, match="paste or upload a picture first"):
        webcam.add_capture(None, 0, 3, *([None] * MAX_CLASSES))
    with pytest.raises(ValueError, match="at least one query"):
        text_tab.classify("minilm", "linear", 0, "contrastive", " \n ", None, *text_tab.load_example("intents")[1 : 1 + 2 * MAX_CLASSES])


# ---- every method a tab lists runs from that tab --------------------------------------------------
@pytest.mark.parametrize("method", [key for _, key in image_tab.method_choices("efficientnet_lite0")])
def test_every_method_the_image_tab_lists_classifies_from_the_tab(single_thread, method):
    settings = {"finetune_steps": 2} if method == "finetune" else {}
    (session, status, _first, cards, _plot), truth, _ = _image_classify("animals", method, **settings)
    assert session.classifier.method == method and "queries classified" in status
    assert len(_labels(cards)) == len(truth)


@pytest.mark.parametrize("method", [key for _, key in text_tab.method_choices(text_tab.DEFAULT_TEXT_ENCODER)])
def test_every_method_the_text_tab_lists_classifies_from_the_tab(method):
    session, status, _first, cards = _text_classify("intents", method, steps=2)
    assert session.classifier.method == method and "queries classified" in status
    assert len(_labels(cards)) == len(session.query_names) > 0


# ---- right and wrong, stale panels, the webcam, errors in the status -----------------------------
def test_example_queries_are_marked_right_or_wrong_with_the_accuracy(single_thread, tmp_path):
    (session, status, _, cards, _), truth, class_values = _image_classify("animals")
    marks = re.findall(r'data-truth="([^"]+)" data-correct="(true|false)"', cards)
    assert [t for t, _ in marks] == truth  # the folders the example queries are in
    right = sum(c == "true" for _, c in marks)
    assert f"Right on {right} of the 6 queries whose class is known" in status
    # A browser uploads a query under a new path: an example query is still recognised by its content.
    copied = tmp_path / "upload-1234" / "pigeon.jpg"
    copied.parent.mkdir()
    copied.write_bytes(Path(image_tab.example_set("animals")[1][0]).read_bytes())
    assert image_tab.IMAGE.read_queries([str(copied)]).hints == ["bird"]
    _, status, _, cards, _ = image_tab.classify("efficientnet_lite0", "protonet", 5, True, 0.5, [str(copied)], None,
                                                session, *class_values)
    assert 'data-truth="bird"' in cards and "Right on" in status


def test_text_queries_name_their_class_after_a_bar_or_a_tab():
    queries = "Wake me at 7 | set_alarm\nWill it rain?\tweather\nrock | paper\nJust a line"
    session, *_ = _text_classify("intents")
    rows = text_tab.load_example("intents")
    session, status, _, cards = text_tab.classify(text_tab.DEFAULT_TEXT_ENCODER, "linear", 0, "contrastive", queries,
                                                  session, *rows[1 : 1 + 2 * MAX_CLASSES])
    assert session.query_names == ("Wake me at 7", "Will it rain?", "rock | paper", "Just a line")  # "paper" is no class
    assert re.findall(r'data-truth="([^"]+)"', cards) == ["set_alarm", "weather"]
    assert "queries whose class is known" in status and "the \"| class\" after each query" in status
    assert text_tab.split_truth("a | b | c") == ("a | b", "c") and text_tab.split_truth("plain") == ("plain", None)


def test_an_edit_of_the_classes_clears_what_showed_the_last_fit(single_thread):
    (session, *_), _, _ = _image_classify("animals")
    values = lambda status: [status, None, "", "cleared"]  # noqa: E731
    assert wiring.classes_edited(4, session, values) == [class_rows.STALE_NOTE, None, "", "cleared"]
    skipped = wiring.classes_edited(2, None, values)
    assert len(skipped) == 2 and "cleared" not in skipped  # nothing was fitted: nothing to clear
    empty = lambda: ["", None]  # noqa: E731
    assert wiring.panels_after_fit(3, empty, session, session.fitted_at)[0] != ""  # panels show this fit
    assert wiring.panels_after_fit(3, empty, session, session.fitted_at - 1) == ["", None, None]  # an older one


def test_frames_recorded_from_the_webcam_go_into_the_class_even_when_the_page_lags(single_thread):
    from PIL import Image

    (session, *_), _, class_values = _image_classify("animals")
    burst, message = webcam.start_burst(0, 2, 3, *class_values)
    assert "Recording 2 frames into bird" in message and burst.base == class_values[MAX_CLASSES]
    frame = Image.new("RGB", (64, 48), (200, 40, 40))
    n_stale = 4
    stale = lambda status: [status] * n_stale  # noqa: E731
    outputs = [webcam.camera_frame(frame, burst, True, session, n_stale=n_stale, stale_values=stale)
               for _ in range(3)]
    files = outputs[1][3]  # the second frame's update of class 1: both frames, whatever the page showed
    assert len(files) == 7 and files[-2:] == burst.frames and "Recorded 2 of 2 frames" in outputs[1][2]
    assert outputs[1][3 + 2 * MAX_CLASSES:] == [class_rows.STALE_NOTE] * n_stale  # the classes changed
    live = outputs[2]  # the recording is done: the next frame is classified live
    assert set(live[1]) == {"bird", "bovine", "fish"} and "Live:" in live[2] and "Recorded 2 frames" in live[2]
    with pytest.raises(ValueError, match="visible classes"):
        webcam.start_burst(5, 2, 3, *class_values)


def test_a_gallery_counts_what_is_left_after_a_delete():
    class Deleted:
        _data = {"file": {"path": "/tmp/b.jpg"}, "index": 1}

    assert image_gallery.gallery_label([("/tmp/a.jpg", None), ("/tmp/b.jpg", None)], Deleted()).label == "1 image"
    assert image_gallery.gallery_label(["/tmp/a.jpg", "/tmp/c.jpg"]).label == "2 images"
    assert "No images yet" in image_gallery.gallery_label(None).label


def test_errors_replace_the_status_line_then_reach_api_callers():
    import gradio as gr

    def failing(x):
        raise UserInputError("add at least one query image")

    stream = events.handled(failing, events.StatusLine(1, cleared={2: ""}), n_outputs=3)(1)
    first = next(stream)
    assert first[1] == "**⚠️ Add at least one query image**" and first[2] == "" and first[0] == gr.skip()
    with pytest.raises(gr.Error, match="add at least one query image"):
        next(stream)


def test_an_unexpected_error_replaces_the_status_line_with_the_incident_message():
    import gradio as gr

    def failing():
        raise ValueError("math domain error")  # not a UserInputError: not the user's to read

    stream = events.handled(failing, events.StatusLine(0), n_outputs=1)()
    shown = next(stream)
    assert "math domain error" not in shown and "Something went wrong on the server" in shown
    with pytest.raises(gr.Error, match=r"incident [0-9a-f]{8}"):
        next(stream)


def test_export_and_push_say_why_not(single_thread, monkeypatch):
    (session, *_), _, _ = _image_classify("mixed_5way", method="ptmap")
    with pytest.raises(ValueError, match="transductive"):
        panels.export_onnx(session)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="cannot be reached"):
        panels.push_classifier(session, "someone/model", None)
    text_session, *_ = _text_classify("sentiment")
    code, _ = panels.save_snippet(text_session, panels.save_classifier(text_session))
    assert "fsd.load(\"fewshot-text-classifier.safetensors\")" in code.value
