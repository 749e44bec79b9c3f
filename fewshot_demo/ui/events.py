"""Every event of the app is declared here, once, with its options: ``on`` for a component's event,
``endpoint`` for a public API function, ``on_unload`` for the end of a session.

    events.on(button.click, classify, inputs, outputs, api="image_classify", group=events.CLASSIFY,
              errors=events.StatusLine(1, cleared={2: None}), show_progress_on=[status])

What each declaration settles, where the event is wired (nothing rewrites the events afterwards):

- API visibility: ``endpoint`` is public, listed on the API page (``ui.api.PUBLIC_ENDPOINTS``); an
  event ``on`` names with ``api`` is callable by that name but undocumented; any other is private.
- Concurrency: a ``Group`` gives its id and limit (read from ``limits()``) and, on a Hugging Face
  Space, the GPU seconds one call may hold (``spaces.GPU``).
- Errors: the one wrapper ``handled`` shows a ``UserInputError``'s or ``gr.Error``'s message, and
  the incident message for anything else (``ui.messages``); ``POPUP`` raises it as a ``gr.Error``,
  ``StatusLine`` first shows it in the event's status line.
- Temporary files: every value a handler returns or yields passes through the tracker
  (``ui.temp_files``), so a session's files go when it ends.

Handlers stay plain functions that raise ``UserInputError``: tests call them without a server.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import gradio as gr

from fewshot_demo.config.settings import limits
from fewshot_demo.ui.gradio_fixes import session_of_request
from fewshot_demo.ui.messages import error_markdown, gradio_error, user_text
from fewshot_demo.ui.temp_files import tracker


@dataclass(frozen=True)
class Group:
    """Events that share a concurrency limit, and the GPU time one call may hold on a Space.

    Attributes:
        id: the concurrency id (None: the event is its own group).
        setting: the ``Limits`` field that holds the limit (``"classify_concurrency"``), or None.
        limit: without a setting, the limit itself: a number, None for none, or "default" (the
            queue's ``default_concurrency_limit``).
        gpu_seconds: on a Hugging Face Space, ``spaces.GPU``'s ``duration`` for each call; None: no GPU.
    """

    id: str | None = None
    setting: str | None = None
    limit: int | None | Literal["default"] = "default"
    gpu_seconds: int | None = None

    def concurrency_limit(self) -> int | None | str:
        """The limit in force (a setting is read from ``limits()`` when the event is declared)."""
        return getattr(limits(), self.setting) if self.setting else self.limit


#: Fits and one-call classifications, the tabs' Classify and the API's fit/predict_* together.
CLASSIFY = Group("classify", setting="classify_concurrency", gpu_seconds=60)
#: Classifications by handle (/predict): their own group, so a running fit never delays them.
PREDICT = Group("predict", setting="predict_concurrency", gpu_seconds=20)
#: Comparison runs: their own group, so a long run never holds a classification back.
COMPARE = Group("compare", setting="compare_concurrency", gpu_seconds=240)
#: Quick answers (Stop, forget, warm-up): never wait for anything.
UNLIMITED = Group(limit=None)
#: Everything else: the queue's default limit.
DEFAULT = Group()


@dataclass(frozen=True)
class Popup:
    """Error policy: the message is raised as a ``gr.Error`` (a pop-up in the page; API callers get it)."""


@dataclass(frozen=True)
class StatusLine:
    """Error policy: the message first replaces the status line, then is raised as a ``gr.Error``.

    Attributes:
        index: the status line's position among the event's outputs.
        cleared: outputs emptied with it, {position: value}; every other output is left as it was.
    """

    index: int
    cleared: Mapping[int, Any] = field(default_factory=dict)

    def outputs(self, text: str, n_outputs: int) -> Any:
        """The outputs that show ``text``: a list, or the value itself for a single output."""
        values: list[Any] = [gr.skip()] * n_outputs
        values[self.index] = error_markdown(text)
        for position, value in self.cleared.items():
            values[position] = value
        return values if n_outputs > 1 else values[0]


POPUP = Popup()
ErrorPolicy = Popup | StatusLine


def on_gpu(fn: Callable[..., Any], seconds: int) -> Callable[..., Any]:
    """``fn`` under ``spaces.GPU(duration=seconds)`` on a Hugging Face Space; ``fn`` itself elsewhere.

    On a Space without ZeroGPU hardware ``spaces.GPU`` itself does nothing.
    """
    try:
        import spaces  # deferred: only a Hugging Face Space has it; importing it there sets up ZeroGPU
    except ImportError:
        return fn
    return spaces.GPU(duration=seconds)(fn)


def handled(fn: Callable[..., Any], errors: ErrorPolicy = POPUP, n_outputs: int = 1,
            gpu_seconds: int | None = None) -> Callable[..., Any]:
    """The one wrapper around every handler: readable errors, temporary files tracked, the GPU.

    Generator handlers stay generators (results still stream); with ``StatusLine`` every handler
    streams, so the status shows the error before the ``gr.Error`` ends the event. Gradio reads
    the handler's parameters (``gr.Progress``, ``gr.Request``) through ``functools.wraps``.

    Args:
        fn: the handler.
        errors: ``POPUP`` or a ``StatusLine``.
        n_outputs: the event's outputs (a ``StatusLine`` fills them).
        gpu_seconds: see ``Group.gpu_seconds``.
    """
    call = on_gpu(fn, gpu_seconds) if gpu_seconds else fn
    streams = inspect.isgeneratorfunction(fn)

    def seen(value: Any) -> Any:
        tracker().track(session_of_request(), value)
        return value

    if not streams and not isinstance(errors, StatusLine):

        @functools.wraps(fn)
        def answered(*args: Any, **kwargs: Any) -> Any:
            try:
                return seen(call(*args, **kwargs))
            except Exception as error:  # noqa: BLE001 - every error becomes a message
                raise gradio_error(error) from None

        return answered

    @functools.wraps(fn)
    def streamed(*args: Any, **kwargs: Any) -> Any:
        try:
            if streams:
                for value in call(*args, **kwargs):
                    yield seen(value)
            else:
                yield seen(call(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - every error becomes a message
            text = user_text(error)
            if isinstance(errors, StatusLine):
                yield errors.outputs(text, n_outputs)
            raise gradio_error(error, text) from None

    return streamed


def on(trigger: Any, fn: Callable[..., Any] | None, inputs: Any = None, outputs: Any = None, *,
       api: str | None = None, group: Group = DEFAULT, errors: ErrorPolicy = POPUP, **options: Any) -> Any:
    """Declare one event: ``trigger`` (``button.click``, ``event.success``, or a list of them for
    ``gr.on``) runs ``fn`` on ``inputs`` into ``outputs``.

    Args:
        trigger: an event listener of a component or of an event, or a list of listeners.
        fn: the handler (None for a JavaScript-only event, passed as ``js=``).
        inputs, outputs: as for Gradio's listeners.
        api: the name API clients call it by (undocumented: it is not on the API page); None: private.
        group: its concurrency group.
        errors: ``POPUP`` or a ``StatusLine``.
        **options: Gradio's other listener options (``show_progress``, ``queue``, ``js``, ...).

    Returns:
        Gradio's ``Dependency``, to chain ``.then``/``.success`` events through ``on`` again.
    """
    handler = fn if fn is None else handled(fn, errors, _count(outputs), group.gpu_seconds)
    listener = functools.partial(gr.on, trigger) if isinstance(trigger, (list, tuple)) else trigger
    return listener(handler, inputs, outputs, api_name=api or False,
                    api_visibility="undocumented" if api else "private",
                    concurrency_id=group.id, concurrency_limit=group.concurrency_limit(), **options)


def endpoint(fn: Callable[..., Any], api: str, group: Group = DEFAULT) -> None:
    """Declare a public API function (``gr.api``): listed on the API page with its docstring;
    errors reach the caller as ``gr.Error`` messages (call inside the app's Blocks)."""
    gr.api(handled(fn, POPUP, 1, group.gpu_seconds), api_name=api, api_visibility="public",
           concurrency_id=group.id, concurrency_limit=group.concurrency_limit())


def on_unload(blocks: gr.Blocks, fn: Callable[[gr.Request], None]) -> None:
    """Run ``fn(request)`` when a browser session ends (its errors are logged, as every handler's)."""
    blocks.unload(handled(fn))


def _count(outputs: Any) -> int:
    if outputs is None:
        return 0
    return len(outputs) if isinstance(outputs, (list, tuple)) else 1
