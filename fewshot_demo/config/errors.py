"""The errors the core raises on purpose, each with a message that says what to do.

``UserInputError`` and its subclasses are the only errors whose message reaches a user as it is:
the app shows it in the page and answers it to API callers. Any other exception is a fault of the
server, logged with an incident number. All are ``ValueError`` subclasses, so code that only wants
"a readable problem" can catch ``ValueError``; code that must tell them apart (the comparison skips
a method that does not apply, but reports one that failed) catches the specific type.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """A problem the user can fix: a bad file, an empty class, an option out of bounds. The message
    names the fix."""


class MethodNotApplicableError(UserInputError):
    """A method cannot run on this modality, backbone or encoder (not a failure of the method)."""


class CheckpointMissingError(MethodNotApplicableError):
    """A meta-learned method has no checkpoint for the backbone or encoder in use."""


class InputKindUnsupportedError(MethodNotApplicableError):
    """The backbone or encoder cannot prepare the inputs a method consumes (e.g. fine-tuning a hub
    backbone without EfficientNet-style stages)."""


class ModelUnavailableError(UserInputError):
    """A backbone, encoder or checkpoint from the Hugging Face Hub cannot be had: offline, or the
    download failed. The message names the bundled alternative."""
