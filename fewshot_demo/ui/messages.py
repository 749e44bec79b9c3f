"""What a user reads when something goes wrong: the message of their mistake, or an incident number.

Only a ``UserInputError`` (``fewshot_demo.config.errors``, and its subclasses) or a ``gr.Error`` is
shown as it is; anything else is a fault of the server, logged here with an incident number, and
the user reads ``GENERIC_MESSAGE``. No message shows a path on the server: the upload, temporary,
home, app and Python folders are cut from every message.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import gradio as gr
from gradio.utils import get_upload_folder

from fewshot_demo.config.errors import UserInputError

logger = logging.getLogger("fewshot_demo.app")

GENERIC_MESSAGE = (
    "Something went wrong on the server while doing this (incident {incident}). Your inputs are kept: "
    "try again; if it happens again, try fewer or smaller files, or another method, and report the incident number."
)


@functools.cache
def _private_folders() -> list[str]:
    """Folders whose paths must not appear in messages: Gradio's uploads, the temporary folder, the
    home folder, the app's own folder and Python's (a path in them shows as its last part)."""
    folders = {get_upload_folder(), tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir()), str(Path.home()),
               str(Path(__file__).resolve().parents[2]), sys.prefix, sys.base_prefix}
    return sorted((f.rstrip("/") for f in folders if f and f != "/"), key=len, reverse=True)


def scrub(message: str) -> str:
    """The message without server paths: a path under a private folder becomes its file name."""
    for folder in _private_folders():
        message = re.sub(re.escape(folder) + r"/(?:[^\s'\"/,;:)]+/)*", "", message)
    return message


def user_text(error: BaseException) -> str:
    """What the user reads for an error, as plain text: a UserInputError's or gr.Error's message
    without server paths; for anything else the generic message, logged with an incident number."""
    text = error.message if isinstance(error, gr.Error) else str(error)
    if isinstance(error, (gr.Error, UserInputError)) and str(text):
        return scrub(str(text))
    incident = secrets.token_hex(4)
    logger.error("incident %s: %s", incident, type(error).__name__, exc_info=error)
    return GENERIC_MESSAGE.format(incident=incident)


def user_message(error: BaseException) -> str:
    """``user_text`` HTML-escaped: Gradio renders the messages of its error pop-ups as HTML."""
    return html.escape(user_text(error), quote=False)


def gradio_error(error: BaseException, text: str | None = None) -> gr.Error:
    """The ``gr.Error`` a user and an API caller receive for ``error`` (``text``: its ``user_text``,
    when already worked out); a ``gr.Error`` keeps its title, duration and visibility."""
    message = html.escape(user_text(error) if text is None else text, quote=False)
    if isinstance(error, gr.Error):
        return gr.Error(message, duration=error.duration, visible=error.visible, title=error.title,
                        print_exception=False)
    return gr.Error(message, print_exception=False)


def error_markdown(message: str) -> str:
    """A status line that says what went wrong and what to do (HTML escaped)."""
    return f"**⚠️ {html.escape(message[:1].upper() + message[1:], quote=False)}**"


def notes_markdown(summary: str, notes: Sequence[str]) -> str:
    """A summary followed by one warning line per note (HTML in the notes is escaped)."""
    return summary + ("\n\n" + "\n".join(f"- ⚠️ {html.escape(n, quote=False)}" for n in notes) if notes else "")
