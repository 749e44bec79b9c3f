"""The app's ``gr.Blocks``: its queue and server follow the limits, and a session keeps nothing stale.

    with GuardedBlocks(title="...") as demo:
        ...                                   # tabs; events through ui.events
    demo.queue().launch()
"""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware

from fewshot_demo.config.settings import limits
from fewshot_demo.runtime.allocator import keep_memory_flat
from fewshot_demo.ui.gradio_fixes import DropsStaleCopies
from fewshot_demo.ui.sessions import SessionGuard
from fewshot_demo.ui.temp_files import TempFiles, tracker


class GuardedBlocks(DropsStaleCopies):
    """``gr.Blocks`` whose ``queue`` and ``launch`` apply the app's limits and install ``SessionGuard``.

    ``queue()`` defaults to ``limits().max_queue`` waiting requests; ``launch()`` to the upload limit
    (``max_file_size``), the session guard, a sweep of leftover temporary files, and malloc
    settings that keep a long-running server's memory flat (``allocator.keep_memory_flat``). Everything can
    still be overridden by arguments, as with ``gr.Blocks``. After each event's outputs, the
    session's state drops the copies Gradio would otherwise keep forever (``gradio_fixes.DropsStaleCopies``).

    Attributes:
        temp_files: the tracker of the temporary files the events' handlers write (``temp_files.tracker()``).
        sessions: the session guard, once launched (it releases a session when it ends).
    """

    sessions: SessionGuard | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.temp_files: TempFiles = tracker()

    def queue(self, status_update_rate: Any = "auto", api_open: bool | None = None, max_size: int | None = None,
              *, default_concurrency_limit: Any = 2) -> "GuardedBlocks":
        return super().queue(status_update_rate, api_open, max_size or limits().max_queue,
                             default_concurrency_limit=default_concurrency_limit)

    def launch(self, *args: Any, app_kwargs: dict[str, Any] | None = None, max_file_size: Any = None,
               **kwargs: Any) -> Any:
        current = limits()
        keep_memory_flat()  # before the first upload is decoded
        app_kwargs = dict(app_kwargs or {})
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(_SessionGuardOf, blocks=self)]
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
        super().__init__(app)
        blocks.sessions = self
