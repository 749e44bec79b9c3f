"""The app's ``gr.Blocks``: its queue and server follow the limits, and a session keeps nothing stale.

    with GuardedBlocks(title="...") as demo:
        ...                                   # tabs; events through ui.events
    demo.queue().launch()
"""

from __future__ import annotations

import functools
import os
from typing import Any

from starlette.middleware import Middleware

from fewshot_demo.config.settings import limits
from fewshot_demo.runtime.allocator import keep_memory_flat
from fewshot_demo.ui.gradio_fixes import DropsStaleCopies, check_every_file_payload
from fewshot_demo.ui.refusals import RouteRefusals, check_inputs, queue_full_message, refusal
from fewshot_demo.ui.sessions import SessionGuard, owner_of_request
from fewshot_demo.ui.temp_files import TempFiles, tracker

#: Gradio's queue summarises its last 10,000 events with pandas after every event by default: at
#: 100 events a second that was the main loop's largest cost (an empty call: 87 a second with it,
#: 180 without, on 2 cores). Every 500 events keeps the monitoring page's figures fresh enough.
ANALYTICS_EVERY_ENV_VAR = "GRADIO_ANALYTICS_CACHE_FREQUENCY"
ANALYTICS_EVERY = 500


class GuardedBlocks(DropsStaleCopies):
    """``gr.Blocks`` whose ``queue`` and ``launch`` apply the app's limits and install ``SessionGuard``.

    ``queue()`` defaults to ``limits().max_queue`` waiting requests; ``launch()`` to the upload limit
    (``max_file_size``), the session guard, a sweep of leftover temporary files, and malloc
    settings that keep a long-running server's memory flat (``allocator.keep_memory_flat``). Everything can
    still be overridden by arguments, as with ``gr.Blocks``. After each event's outputs, the
    session's state drops the copies Gradio would otherwise keep forever (``gradio_fixes.DropsStaleCopies``).
    What Gradio refuses before a handler runs, and a full queue, get a message (``ui.refusals``); the
    queue checks the session id it parsed against the request's owner (``SessionGuard.let_in``).

    Attributes:
        temp_files: the tracker of the temporary files the events' handlers write (``temp_files.tracker()``).
        sessions: the session guard, once launched (it releases a session when it ends).
    """

    sessions: SessionGuard | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.temp_files: TempFiles = tracker()

    def queue(self, status_update_rate: Any = "auto", api_open: bool | None = False, max_size: int | None = None,
              *, default_concurrency_limit: Any = 2) -> GuardedBlocks:
        # api_open=False: a queued event is not run by /gradio_api/run/<name> either. That route skips the
        # queue (its concurrency limits, its size) and builds a fresh session state on every call.
        # Summaries for the monitoring page every ANALYTICS_EVERY events, not after each one.
        os.environ.setdefault(ANALYTICS_EVERY_ENV_VAR, str(ANALYTICS_EVERY))
        super().queue(status_update_rate, api_open, max_size or limits().max_queue,
                      default_concurrency_limit=default_concurrency_limit)
        self._queue.push = self._guarded_push(self._queue.push)  # type: ignore[method-assign]
        return self

    def _guarded_push(self, push: Any) -> Any:
        """The queue's ``push``: the session it parsed must be the request's owner's; a full queue says what to do."""

        async def guarded(body: Any, request: Any, username: Any) -> Any:
            session = getattr(body, "session_hash", None)
            if self.sessions is not None and session and owner_of_request(request) is not None:
                refused = self.sessions.let_in(session, owner_of_request(request))
                if refused:
                    return False, refused, "error"
            success, answer, state = await push(body, request, username)
            if state == "queue_full":
                answer = queue_full_message(self._queue.max_size)
            return success, answer, state

        return guarded

    async def process_api(self, block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Gradio's ``process_api``; what it refuses before the handler runs becomes a message (``ui.refusals``)."""
        event = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        try:
            check_every_file_payload(list(event.inputs), inputs)
            check_inputs(event, inputs)
            return await super().process_api(block_fn, inputs, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - every refusal gets a message; a gr.Error stays as it is
            raise refusal(error, event) from None

    def launch(self, *args: Any, app_kwargs: dict[str, Any] | None = None, max_file_size: Any = None,
               **kwargs: Any) -> Any:
        current = limits()
        keep_memory_flat()  # before the first upload is decoded
        app_kwargs = dict(app_kwargs or {})
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(_SessionGuardOf, blocks=self),
                                    Middleware(RouteRefusals)]
        self.temp_files.start_sweeping(every_s=max(60.0, min(600.0, self.temp_files.max_age_s / 2)))
        return super().launch(*args, app_kwargs=app_kwargs,
                              max_file_size=max_file_size or int(current.max_upload_mb * 2**20), **kwargs)

    def end_session(self, session: str | None) -> None:
        """A browser session ended: remove its temporary files, forget its owner."""
        self.temp_files.end_session(session)
        if self.sessions is not None:
            self.sessions.release(session)


class _SessionGuardOf(SessionGuard):
    """The session guard Starlette builds for a ``GuardedBlocks``, which keeps it to release sessions."""

    def __init__(self, app: Any, blocks: GuardedBlocks) -> None:
        super().__init__(app, session_of_event=functools.partial(_session_of_event, blocks))
        blocks.sessions = self


def _session_of_event(blocks: GuardedBlocks, event_id: str) -> str | None:
    """The session of a queued or just-finished event, found as Gradio finds it (``routes.simple_predict_get``)."""
    queue = blocks._queue
    event = queue.event_ids_to_events.get(event_id)
    if event is not None:
        return event.session_hash
    return next((session for session, ids in list(queue.pending_event_ids_session.items()) if event_id in ids), None)
