"""Every event is declared once through ``fewshot_demo.ui.events``: its API visibility, concurrency
group, error policy and temporary files, as the built app has them."""

from __future__ import annotations

import functools

import gradio as gr
import pytest
from gradio.context import LocalContext

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.ui import events, image_tab, text_tab
from fewshot_demo.ui.api import PUBLIC_ENDPOINTS
from fewshot_demo.ui.support.suggestions import SLOTS
from fewshot_demo.ui.temp_files import TempFiles


@pytest.fixture(scope="module")
def demo():
    import app as app_module

    return app_module.demo


def _innermost(fn):
    while isinstance(fn, functools.partial) or hasattr(fn, "__wrapped__"):
        fn = fn.func if isinstance(fn, functools.partial) else fn.__wrapped__
    return fn


def test_only_the_public_endpoints_are_public_every_named_event_is_undocumented_the_rest_private(demo):
    public = sorted(fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public")
    assert public == sorted(PUBLIC_ENDPOINTS)
    undocumented = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "undocumented"}
    assert {"image_classify", "text_classify", "compare_run", "compare_stop", "image_load_example"} <= undocumented
    assert not undocumented & set(PUBLIC_ENDPOINTS) and not any(name.startswith("false") for name in undocumented)
    assert {fn.api_visibility for fn in demo.fns.values()} == {"public", "undocumented", "private"}


def test_every_classify_is_in_the_classify_group_even_when_an_example_starts_it(demo):
    classifies = [fn for fn in demo.fns.values()
                  if fn.fn is not None and _innermost(fn.fn) in (image_tab.classify, text_tab.classify)]
    # each tab: its button, the API's example by name, the example cards, and each suggested query's "Add to"
    assert len(classifies) == 2 * (3 + SLOTS)
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in classifies} == {("classify", 2)}
    assert sum(fn.api_visibility == "undocumented" for fn in classifies) == 2  # /image_classify, /text_classify


def test_no_event_is_left_unwrapped(demo):
    for fn in demo.fns.values():
        if fn.fn is not None:
            assert fn.fn.__code__.co_name in ("answered", "streamed"), fn.api_name  # ``handled``'s wrappers


def test_a_users_mistake_reaches_the_user_escaped_anything_else_as_an_incident():
    def refuse():
        raise UserInputError("the class <b>cat</b> has no images")

    with pytest.raises(gr.Error) as raised:
        events.handled(refuse)()
    assert raised.value.message == "the class &lt;b&gt;cat&lt;/b&gt; has no images"

    def fail():
        raise KeyError("internal")

    with pytest.raises(gr.Error, match=r"Something went wrong on the server.*incident [0-9a-f]{8}"):
        events.handled(fail)()

    def warn():
        raise gr.Error("the queue is full", duration=3, title="Busy")

    with pytest.raises(gr.Error) as raised:
        events.handled(warn)()
    assert (raised.value.message, raised.value.duration, raised.value.title) == ("the queue is full", 3, "Busy")


def test_a_temporary_file_a_handler_returns_is_tracked_under_the_events_session(tmp_path, monkeypatch):
    files = TempFiles(root=str(tmp_path))
    monkeypatch.setattr(events, "tracker", lambda: files)
    folder = tmp_path / "fewshot-export"
    folder.mkdir()
    written = str(folder / "classifier.onnx")
    later = str(tmp_path / "fewshot-frames" / "frame-001.jpg")

    def streamed():
        yield "recording"
        yield [later]

    token = LocalContext.request.set(gr.Request(session_hash="session-1"))
    try:
        assert events.handled(lambda: [written, "done"])() == [written, "done"]
        assert list(events.handled(streamed)()) == ["recording", [later]]
    finally:
        LocalContext.request.reset(token)
    (tmp_path / "fewshot-frames").mkdir()
    assert files.end_session("session-1") == 2 and not folder.exists() and not (tmp_path / "fewshot-frames").exists()


def test_a_group_reads_its_limit_from_the_settings(monkeypatch):
    from fewshot_demo.config.settings import settings

    monkeypatch.setenv("FEWSHOT_CLASSIFY_CONCURRENCY", "3")
    settings.cache_clear()
    assert events.CLASSIFY.concurrency_limit() == 3
    assert events.UNLIMITED.concurrency_limit() is None and events.DEFAULT.concurrency_limit() == "default"


def test_every_event_without_inputs_answers_one_value_per_output(demo):
    """Gradio drops extra values with a warning and shifts nothing back: one value too many once gave the
    text tab's upload a plot's clearing meant for another output (its follow-up event failed)."""
    checked = 0
    for fn in demo.fns.values():
        if fn.fn is None or fn.inputs or _innermost(fn.fn).__name__ != "<lambda>":
            continue
        values = fn.fn()
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        assert len(values) == len(fn.outputs), (fn.api_name, len(values), len(fn.outputs))
        checked += 1
    assert checked >= 8
