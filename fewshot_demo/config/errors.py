"""The errors the core raises on purpose, each with a message that says what to do.

All are ``ValueError`` subclasses, so code that only wants "a readable problem" can catch
``ValueError``; code that must tell them apart (the comparison skips a method that does not apply,
but reports one that failed) catches the specific type.
"""

from __future__ import annotations


class FewShotError(ValueError):
    """A problem the user can fix; the message names the fix."""


class UserInputError(FewShotError):
    """What the user gave cannot be used: a bad file, an empty class, an option out of bounds."""


class MethodNotApplicableError(FewShotError):
    """A method cannot run on this modality, backbone or encoder (not a failure of the method)."""


class CheckpointMissingError(MethodNotApplicableError):
    """A meta-learned method has no checkpoint for the backbone or encoder in use."""


class InputKindUnsupportedError(MethodNotApplicableError):
    """The backbone or encoder cannot prepare the inputs a method consumes (e.g. fine-tuning a hub
    backbone without EfficientNet-style stages)."""
