"""Checkpoints of the trained methods (meta-learned and self-supervised): save, find, load with
validation, and share through the Hugging Face Hub.

A checkpoint is a folder with two files, never a pickle:

- ``model.safetensors``: the network's tensors under ``network.<name>`` and the method's own
  tensors (``inner_lr.<name>`` for MAML's learned step sizes, ``method.log_temperature`` for
  Matching Networks); what a method trains only to drop it afterwards (SimCLR's projection head,
  the masked autoencoder's decoder) is not stored;
- ``config.json``: method, network architecture, backbone id, feature_dim, the episode shape and
  inner-loop settings used in training, training and validation classes, validation accuracy, the
  package version, and the SHA-256 of ``model.safetensors``.

Loading checks all of it and raises ``ValueError`` with what to do: another method, backbone or
architecture, missing or unexpected tensors, wrong shapes, a file that is not safetensors, or a
model file whose hash differs from the one recorded (tampered or corrupted).

Checkpoints are looked up by name ``<method>-<backbone id>``: first in the user folder
(``FEWSHOT_CHECKPOINTS``, default ``~/.cache/fewshot_demo/checkpoints``, where hub downloads go),
then among the checkpoints shipped with the package.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, snapshot_download
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from fewshot_demo.config.errors import ModelUnavailableError, UserInputError
from fewshot_demo.config.version import __version__
from fewshot_demo.methods.checkpoint_index import (
    CONFIG_FILE,
    MODEL_FILE,
    checkpoint_name,
    user_dir,
)
from fewshot_demo.methods.networks import EmbeddingNetwork, build_network
from fewshot_demo.methods.registry import recipe_of
from fewshot_demo.runtime.hub import hub_unreachable_reason

FORMAT_VERSION = 1
REQUIRED_FIELDS = ("format_version", "method", "architecture", "backbone_id", "feature_dim", "model_sha256")


class HubUnavailableError(ModelUnavailableError):
    """The Hugging Face Hub cannot be reached (offline, or HF_HUB_OFFLINE is set)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    directory: Path,
    method: str,
    network: EmbeddingNetwork,
    backbone_id: str,
    extra_tensors: dict[str, Tensor] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory``.

    Args:
        directory: created if needed; existing files are replaced.
        method: a meta-trained method (``meta_trained_methods()``).
        network: the trained network; stored under ``network.<name>``.
        backbone_id: the backbone whose output the network reads (``pixels28`` for Conv-4).
        extra_tensors: the method's own tensors (e.g. ``inner_lr.*``).
        config: more JSON-able fields (training settings, classes, validation accuracy, command).

    Returns:
        The directory.
    """
    recipe_of(method)  # refuses a method that is not meta-trained
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"network.{name}": value.detach().float().cpu().contiguous() for name, value in network.state_dict().items()}
    tensors.update({name: value.detach().float().cpu().contiguous() for name, value in (extra_tensors or {}).items()})
    model_path = directory / MODEL_FILE
    # One metadata key only: safetensors writes several in arbitrary order, which would make the
    # bytes (and the recorded SHA-256) of a reproduced checkpoint differ from the shipped one.
    save_file(tensors, str(model_path), metadata={"format": "pt"})
    model_path.chmod(0o644)  # package data: readable by everyone
    architecture = network.architecture()
    feature_dim = architecture.get("feature_dim") or 784
    full_config = {
        "format_version": FORMAT_VERSION,
        "method": method,
        "architecture": architecture,
        "backbone_id": backbone_id,
        "feature_dim": int(feature_dim),
        "package_version": __version__,
        **(config or {}),
        "model_sha256": _sha256(model_path),
    }
    (directory / CONFIG_FILE).write_text(json.dumps(full_config, indent=2) + "\n")
    return directory


@dataclass
class Checkpoint:
    """A loaded, validated checkpoint.

    Attributes:
        directory: where it was read from.
        config: the parsed config.json.
        network: the network with the stored weights, in eval mode, on the requested device.
        extras: the method's own tensors (keys without the ``network.`` prefix), on that device.
    """

    directory: Path
    config: dict[str, Any]
    network: EmbeddingNetwork
    extras: dict[str, Tensor]


def load_checkpoint(
    directory: str | os.PathLike,
    method: str | None = None,
    backbone_id: str | None = None,
    feature_dim: int | None = None,
    device: torch.device | str = "cpu",
) -> Checkpoint:
    """Load and validate a checkpoint folder.

    Args:
        directory: folder with ``model.safetensors`` and ``config.json``.
        method, backbone_id, feature_dim: what the caller needs; a checkpoint made for anything
            else is refused. None skips that check.
        device: where the network goes.

    Raises:
        UserInputError: with the reason and what to do, for any of the problems listed in the module
            docstring.
    """
    directory = Path(directory)
    model_path, config_path = directory / MODEL_FILE, directory / CONFIG_FILE
    if not model_path.is_file() or not config_path.is_file():
        raise UserInputError(
            f"{directory} is not a checkpoint: it needs {MODEL_FILE} and {CONFIG_FILE}. "
            "Train one with `python -m fewshot_demo.train` or pull one with `python -m fewshot_demo.train pull`."
        )
    stat = model_path.stat()
    return _load_cached(
        str(model_path.resolve()), stat.st_mtime_ns, stat.st_size, config_path.stat().st_mtime_ns,
        method, backbone_id, feature_dim, str(torch.device(device)),
    )


@functools.lru_cache(maxsize=32)
def _load_cached(
    model_file: str, _mtime: int, _size: int, _config_mtime: int,
    method: str | None, backbone_id: str | None, feature_dim: int | None, device: str,
) -> Checkpoint:
    """Load once per file version and device: the bench builds a learner per episode."""
    model_path = Path(model_file)
    directory = model_path.parent
    retrain = "Retrain it with the command in fewshot_demo/checkpoints/README.md or pull it again."
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserInputError(f"{directory / CONFIG_FILE} is not valid JSON ({error}). {retrain}") from None
    if not isinstance(config, dict):
        raise UserInputError(f"{directory / CONFIG_FILE} must hold a JSON object. {retrain}")
    missing_fields = [field for field in REQUIRED_FIELDS if field not in config]
    if missing_fields:
        raise UserInputError(f"{directory / CONFIG_FILE} lacks {', '.join(missing_fields)}. {retrain}")
    if config["format_version"] != FORMAT_VERSION:
        raise UserInputError(
            f"{directory} has checkpoint format {config['format_version']}, this version reads format "
            f"{FORMAT_VERSION}. {retrain}"
        )
    if method is not None and config["method"] != method:
        raise UserInputError(
            f"{directory} is a {config['method']!r} checkpoint, not {method!r}; "
            f"use it with --methods {config['method']} or train a {method!r} one"
        )
    if backbone_id is not None and config["backbone_id"] != backbone_id:
        raise UserInputError(
            f"{directory} was meta-trained on {config['backbone_id']!r} features, not {backbone_id!r}; "
            f"use --backbone {config['backbone_id']} or train a checkpoint for {backbone_id!r}"
        )
    if feature_dim and int(config["feature_dim"]) != int(feature_dim):
        raise UserInputError(
            f"{directory} reads {config['feature_dim']}-d features but the backbone gives {feature_dim}-d; "
            "use the backbone it was trained on"
        )
    if _sha256(model_path) != config["model_sha256"]:
        raise UserInputError(
            f"{model_path} does not match the SHA-256 recorded in {CONFIG_FILE}: the file was modified or "
            f"corrupted. {retrain}"
        )
    try:
        tensors = load_file(str(model_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise UserInputError(f"{model_path} is not a readable safetensors file ({error}). {retrain}") from None
    try:
        network = build_network(config["architecture"])
    except ValueError as error:
        raise UserInputError(f"{directory}: {error}. {retrain}") from None
    expected = {f"network.{name}": tuple(value.shape) for name, value in network.state_dict().items()}
    try:
        expected.update(recipe_of(config["method"]).extra_shapes(config, network))
    except ValueError as error:
        raise UserInputError(f"{directory}: {error}. {retrain}") from None
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise UserInputError(
            f"{model_path} does not fit the {config['architecture'].get('kind')} architecture in its config "
            f"(missing: {missing[:5] or 'none'}; unexpected: {unexpected[:5] or 'none'}). {retrain}"
        )
    wrong = [f"{name} {tuple(tensors[name].shape)} != {shape}" for name, shape in expected.items() if tuple(tensors[name].shape) != shape]
    if wrong:
        raise UserInputError(f"{model_path} has tensors of the wrong shape: {'; '.join(wrong[:5])}. {retrain}")
    bad = [name for name, value in tensors.items() if not torch.isfinite(value).all()]
    if bad:
        raise UserInputError(f"{model_path} holds non-finite values in {', '.join(bad[:5])}. {retrain}")
    network.load_state_dict({name[len("network.") :]: value for name, value in tensors.items() if name.startswith("network.")})
    network = network.to(torch.device(device)).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    extras = {name: value.to(torch.device(device)) for name, value in tensors.items() if not name.startswith("network.")}
    return Checkpoint(directory=directory, config=config, network=network, extras=extras)


def push_to_hub(directory: str | os.PathLike, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Upload a checkpoint folder to a Hugging Face Hub model repository; return its URL.

    Raises:
        HubUnavailableError: when offline, saying so in a few seconds rather than after retries.
        UserInputError: when the folder is not a valid checkpoint.
    """
    load_checkpoint(directory)  # never publish a broken checkpoint
    reason = hub_unreachable_reason()
    if reason is not None:
        raise HubUnavailableError(f"cannot push to the Hugging Face Hub: {reason}. Try again when online.")

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(directory), repo_id=repo_id, repo_type="model", allow_patterns=[MODEL_FILE, CONFIG_FILE])
    return f"https://huggingface.co/{repo_id}"


def pull_from_hub(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """Download a checkpoint from the Hub into the user folder, validate it, and return its folder.

    The folder is named ``<method>-<backbone id>`` from the downloaded config, so the registry
    finds it (it takes precedence over a shipped checkpoint of the same name).

    Raises:
        HubUnavailableError: when offline.
        UserInputError: when the download is not a valid checkpoint.
    """
    reason = hub_unreachable_reason()
    if reason is not None:
        raise HubUnavailableError(
            f"cannot pull {repo_id} from the Hugging Face Hub: {reason}. The shipped checkpoints work offline."
        )

    staging = Path(
        snapshot_download(repo_id, revision=revision, token=token, allow_patterns=[MODEL_FILE, CONFIG_FILE])
    )
    checkpoint = load_checkpoint(staging)
    target = user_dir() / checkpoint_name(checkpoint.config["method"], checkpoint.config["backbone_id"])
    target.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, CONFIG_FILE):
        (target / name).write_bytes((staging / name).read_bytes())
    load_checkpoint(target)
    return target


