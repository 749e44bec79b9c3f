"""Where the trained methods' checkpoints are: the user folder first, then the ones shipped with the package.

A checkpoint is a folder named ``<method>-<backbone id>`` holding ``model.safetensors`` and
``config.json`` (see ``checkpoint_store``). The user folder (``FEWSHOT_CHECKPOINTS``, default
``~/.cache/fewshot_demo/checkpoints``, where hub downloads go) takes precedence over the shipped ones."""

from __future__ import annotations

from pathlib import Path

from fewshot_demo.config.settings import settings

MODEL_FILE = "model.safetensors"


CONFIG_FILE = "config.json"


#: Checkpoints shipped inside the package.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


def user_dir() -> Path:
    """Folder for checkpoints the user trained or pulled (``settings().checkpoints_dir``: ``FEWSHOT_CHECKPOINTS``)."""
    return settings().checkpoints_dir


def checkpoint_name(method: str, backbone_id: str) -> str:
    """The folder name of a checkpoint, e.g. ``maml-efficientnet_lite0``."""
    return f"{method}-{backbone_id}"


def find_checkpoint(method: str, backbone_id: str) -> Path | None:
    """Return the folder of the checkpoint for a method and backbone, or None when there is none."""
    for root in (user_dir(), SHIPPED_DIR):
        folder = root / checkpoint_name(method, backbone_id)
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None
