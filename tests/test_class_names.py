"""Class names: kept in NFC, and two names that a card would show alike are refused with the pair named,
on every path that names classes (the tabs, the API's fits, fsd.fit, zip folders, table labels, the
comparison's upload)."""

from __future__ import annotations

import unicodedata

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from hostile import png, zip_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

import fewshot_demo as fsd
from fewshot_demo.bench.comparison import ComparisonData
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.limits import Limits
from fewshot_demo.core.class_names import check_class_names, look_alike_key
from fewshot_demo.data.labelled import LoadedData

ROWS = Limits.ROWS
NFD_CAFE, NFC_CAFE = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")
#: Pairs a card shows alike, and what the refusal starts with (None: "'first' and 'second' look the same: rename one").
LOOK_ALIKES = [
    (NFC_CAFE, NFD_CAFE, "two classes are named 'café'"),
    ("bird", "Bird", "two classes are named 'Bird'"),
    ("bird", "ｂｉｒｄ", "'bird' and 'ｂｉｒｄ' look the same: rename one"),
    ("bird", "bi\u200brd", "'bird' and 'bi\\u200brd' look the same: rename one"),
    ("bird", "bi\u00adrd", "'bird' and 'bi\\xadrd' look the same: rename one"),
    ("bird", "\ufeffbird\u2060", None),
    ("bird", "b\u200cird\u200d", None),
    ("big bird", "big\u3000\u3000bird", None),
    ("ﬁsh", "FISH", None),
    ("Straße", "STRASSE", None),
]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u034f", "\ufe0f", "\u202e"]


@pytest.mark.parametrize("first, second, message", LOOK_ALIKES)
def test_names_a_card_shows_alike_are_refused_naming_the_pair(first, second, message):
    message = message or f"{first!r} and {second!r} look the same: rename one"
    with pytest.raises(UserInputError) as raised:
        check_class_names([first, "other", second])
    assert str(raised.value).startswith(message), raised.value


def test_names_are_kept_in_nfc_and_different_names_stay_different():
    assert check_class_names([NFD_CAFE, " tea "]) == [NFC_CAFE, "tea"]
    assert check_class_names(["resume", "résumé", "cats", "cat", "bird 2", "bird2"]) == \
        ["resume", "résumé", "cats", "cat", "bird 2", "bird2"]
    with pytest.raises(UserInputError, match="class 2 has no name"):
        check_class_names(["bird", "\u200b\u2060"])


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=12),
       st.sampled_from(INVISIBLE), st.integers(0, 12), st.booleans())
def test_a_name_with_an_invisible_character_or_another_case_or_width_collides_with_it(name, mark, at, upper):
    if not look_alike_key(name):
        return  # a name that shows nothing is refused as empty (above)
    at = min(at, len(name))
    variant = name[:at] + mark + name[at:]
    if upper and variant.swapcase().swapcase() != variant:
        return  # 'ı'.swapcase() is 'I', whose own lower case is 'i': a different letter, not a case
    variant = variant.swapcase() if upper else unicodedata.normalize("NFKD", variant)
    assert look_alike_key(variant) == look_alike_key(name)
    with pytest.raises(UserInputError):
        check_class_names([name, variant])


# ------------------------------------------------------------------------------------------ every path
def _refused(call, message: str = "look the same") -> None:
    with pytest.raises((AppError, UserInputError)) as raised:
        call()
    assert message in str(raised.value) and "incident" not in str(raised.value), raised.value


def test_every_path_that_names_classes_refuses_look_alikes(client, tmp_path):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    red.write_bytes(png("red"))
    blue.write_bytes(png("blue"))
    files = [handle_file(str(red)), handle_file(str(blue))]
    names = ["bird", "ｂｉｒｄ", *[""] * (ROWS - 2)]
    # The image tab and the text tab.
    _refused(lambda: client.predict("efficientnet_lite0", "protonet", 5, True, 0.5, [files[0]], None, *names,
                                    [files[0]], [files[1]], *[None] * (ROWS - 2), 5, 1.0, api_name="/image_classify"))
    _refused(lambda: client.predict("minilm", "linear", 5, "contrastive", "hi", *names, "hello", "rain",
                                    *[""] * (ROWS - 2), api_name="/text_classify"))
    # The API's fits: labels, a zip of class folders, a table's labels.
    _refused(lambda: client.predict(files, ["bird", "bi\u200brd"], api_name="/fit_images"))
    archive = tmp_path / "classes.zip"
    archive.write_bytes(zip_bytes({"set/bird/1.png": png("red"), "set/ｂｉｒｄ/1.png": png("blue")}))
    _refused(lambda: client.predict([handle_file(str(archive))], None, api_name="/fit_images"))
    _refused(lambda: client.predict(["hello", "rain"], [NFC_CAFE, NFD_CAFE], api_name="/fit_texts"),
             "two classes are named 'café'")
    table = tmp_path / "labels.csv"
    table.write_text("text,label\nhello,bird\nrain,ｂｉｒｄ\nsun,bird\nwind,ｂｉｒｄ\n", encoding="utf-8")
    _refused(lambda: client.predict(None, None, "linear", handle_file(str(table)), api_name="/fit_texts"))
    _refused(lambda: client.predict(["hello", "rain"], ["bird", "BIRD\u200b"], ["hi"], api_name="/predict_texts"))
    # The comparison's upload, and fsd.fit.
    _refused(lambda: client.submit("upload", handle_file(str(table)), 2, [1], 10, ["protonet"],
                                   api_name="/compare_run").result())
    _refused(lambda: fsd.fit({"bird": ["hello"], "ｂｉｒｄ": ["rain"]}, modality="text"))
    _refused(lambda: fsd.fit({"bird": [str(red)], "bi\u00adrd": [str(blue)]}, modality="image"))


def test_the_comparison_refuses_look_alike_labels_before_any_embedding():
    with pytest.raises(UserInputError, match="'bird' and 'ｂｉｒｄ' look the same"):
        ComparisonData.from_data("labels.csv", LoadedData("text", ["a", "b", "c"], ["bird", "ｂｉｒｄ", "cat"]))


def test_a_name_typed_in_nfd_comes_back_in_nfc(client):
    fitted = client.predict(["hello", "rain"], [NFD_CAFE, "tea"], api_name="/fit_texts")
    assert fitted["classes"] == [NFC_CAFE, "tea"]
    answer = client.predict(fitted["handle"], ["hello"], api_name="/predict")
    assert set(answer["predictions"][0]["probabilities"]) == {NFC_CAFE, "tea"}
