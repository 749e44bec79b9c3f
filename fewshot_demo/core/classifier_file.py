"""The saved-classifier file: one safetensors file whose JSON header says what it holds (never pickle).

    write_classifier_file(path, tensors, header)
    saved = read_classifier_file(path, expected_encoder_id="efficientnet_lite0")
    saved.header["class_names"], saved.support_features, saved.learner_state

The header records the format and its version, the package version, the encoder, the method with
its options and config, the class names, and a SHA-256 over header and tensors. Reading checks all
of it (not ours, another version, modified, another encoder, unknown method, shapes that do not fit)
and raises ``UserInputError`` with what to do; it never runs code from the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.version import __version__
from fewshot_demo.methods import available_methods

FILE_FORMAT = "fewshot-demo-classifier"
FILE_FORMAT_VERSION = 1
#: The prefix of the learner's own tensors in the file.
LEARNER_PREFIX = "learner."
_HINT = "save the classifier again from this app and load that file"


@dataclass(frozen=True)
class SavedClassifier:
    """A checked file's contents.

    Attributes:
        name: the file's name, for messages.
        header: the JSON header (format, encoder_id, method, learner_options, class_names, ...).
        support_features: (n_support, feature_dim) float features.
        support_labels: (n_support,) labels in 0..n_way-1.
        learner_state: the learner's tensors (empty for a learner that is refitted on load).
    """

    name: str
    header: dict[str, Any]
    support_features: Tensor
    support_labels: Tensor
    learner_state: dict[str, Tensor]

    @property
    def class_names(self) -> list[str]:
        return list(self.header["class_names"])


def checksum(tensors: dict[str, Tensor], header: dict) -> str:
    """SHA-256 over the header and every tensor: detects edits, not deliberate forgery."""
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def write_classifier_file(path: str | Path, tensors: dict[str, Tensor], header: dict[str, Any]) -> Path:
    """Write ``tensors`` under ``header`` (format, version and checksum are added here)."""
    header = {"format": FILE_FORMAT, "format_version": FILE_FORMAT_VERSION, "package_version": __version__, **header}
    tensors = {key: value.contiguous().cpu() for key, value in tensors.items()}
    header["checksum"] = checksum(tensors, header)
    path = Path(path)
    save_file(tensors, str(path), metadata={"fewshot_demo": json.dumps(header)})
    return path


def _read(path: str | Path, name: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The header and tensors of a file that is ours and unmodified."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise UserInputError(f"{name} is not a saved classifier file ({error}); {_HINT}") from None
    try:
        header = json.loads(metadata["fewshot_demo"])
        fmt = header["format"]
    except (KeyError, TypeError, ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise UserInputError(f"{name} is a safetensors file but not a saved few-shot classifier; {_HINT}") from None
    if not isinstance(header, dict):
        raise UserInputError(f"{name} is a safetensors file but not a saved few-shot classifier; {_HINT}")
    if fmt != FILE_FORMAT or header.get("format_version") != FILE_FORMAT_VERSION:
        raise UserInputError(f"{name} has format {fmt!r} v{header.get('format_version')}, not ours; {_HINT}")
    if header.get("checksum") != checksum(tensors, {k: v for k, v in header.items() if k != "checksum"}):
        raise UserInputError(f"{name} was modified after it was saved (checksum mismatch); {_HINT}")
    return header, tensors


def _is_text(value: Any, longest: int = 200) -> bool:
    return isinstance(value, str) and 0 < len(value.strip()) and len(value) <= longest


#: Each header field this module reads, what it must be, and how to say it (a checksum only shows
#: that nothing changed since the file was written, not that a forger wrote sensible values).
HEADER_FIELDS: dict[str, tuple[Any, str]] = {
    "encoder_id": (_is_text, "an encoder id (text)"),
    "method": (_is_text, "a method name (text)"),
    "feature_dim": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 20,
                    "a positive whole number"),
    "class_names": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of class names"),
    "learner_options": (lambda v: v is None or (isinstance(v, dict) and all(isinstance(k, str) for k in v)),
                        "an object of option values"),
    "learner_config": (lambda v: v is None or isinstance(v, dict), "an object"),
}


def check_header(header: dict[str, Any], name: str) -> None:
    """Check every header field this version reads (``HEADER_FIELDS``) before any is used.

    Raises:
        UserInputError: naming the first field that is missing or of the wrong kind.
    """
    for key, (valid, expected) in HEADER_FIELDS.items():
        if key not in header and key in ("learner_options", "learner_config"):
            continue
        if key not in header:
            raise UserInputError(f"{name} lacks its {key!r} field; {_HINT}")
        if not valid(header[key]):
            shown = json.dumps(header[key])[:40]
            raise UserInputError(f"{name} has {key!r} = {shown}, not {expected}; {_HINT}")


def read_classifier_file(path: str | Path, expected_encoder_id: str | None = None) -> SavedClassifier:
    """Read and check a file written by ``write_classifier_file``.

    Args:
        path: the .safetensors file.
        expected_encoder_id: refuse files made with another backbone or encoder.

    Raises:
        UserInputError: when the file is not ours, was modified, or does not fit; the message says
            what to do.
    """
    name = Path(path).name
    header, tensors = _read(path, name)
    check_header(header, name)
    encoder_id = header["encoder_id"]
    if expected_encoder_id is not None and encoder_id != expected_encoder_id:
        raise UserInputError(
            f"{name} was made with backbone {encoder_id!r}, but {expected_encoder_id!r} is selected; "
            f"select {encoder_id!r} and load it again, or refit with the current backbone"
        )
    method = header["method"]
    if method not in available_methods():
        raise UserInputError(f"{name} uses method {method!r}, which this version does not have; {_HINT}")
    try:
        features, labels = tensors["support_features"], tensors["support_labels"]
        class_names = header["class_names"]
    except KeyError as missing:
        raise UserInputError(f"{name} lacks {missing}; {_HINT}") from None
    if features.ndim != 2 or features.shape[1] != header.get("feature_dim") or labels.shape != (features.shape[0],):
        raise UserInputError(f"{name} has inconsistent tensor shapes; {_HINT}")
    if not torch.isfinite(features).all():
        raise UserInputError(f"{name} contains non-finite features; {_HINT}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise UserInputError(f"{name} has labels outside its {len(class_names)} classes; {_HINT}")
    state = {key[len(LEARNER_PREFIX):]: value for key, value in tensors.items() if key.startswith(LEARNER_PREFIX)}
    return SavedClassifier(name, header, features, labels, state)


def unusable(saved: SavedClassifier, reason: str) -> UserInputError:
    """The error for a file whose contents this version cannot use."""
    return UserInputError(f"{saved.name}: {reason}; {_HINT}")
