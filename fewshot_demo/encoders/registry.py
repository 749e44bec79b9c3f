"""Every backbone and text encoder by id, whatever its modality, and each modality's defaults.

    modality_of("minilm:layers")                   # "text"
    input_kinds("efficientnet_lite0")              # ("features", "last_block_input", "pixels224")
    encoder = get_encoder("efficientnet_lite0")    # an Encoder (loaded once, then shared)
    default_encoder("text"), default_method("image")

Nothing here loads a model until ``get_encoder`` is called.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.data.labelled import MODALITIES
from fewshot_demo.encoders.backbones import BACKBONES, BUNDLED_BACKBONE, configured_backbone
from fewshot_demo.encoders.image import load_backbone
from fewshot_demo.encoders.protocol import Encoder
from fewshot_demo.encoders.text import BUNDLED_ENCODER, ENCODERS, TOKENS, configured_encoder, load_encoder


@dataclass(frozen=True)
class ModalityDefaults:
    """What a modality uses when the caller names no encoder or method.

    Attributes:
        encoder: the bundled, offline backbone or encoder id (``FEWSHOT_DEFAULT_BACKBONE`` and
            ``FEWSHOT_DEFAULT_TEXT_ENCODER`` name another: see ``default_encoder``).
        method: a method that runs on every encoder of the modality, meta-trained where it can be.
    """

    encoder: str
    method: str


#: Images: ProtoNet (meta-trained on the bundled backbone) on EfficientNet-Lite0. Text: a linear
#: probe on MiniLM's last and middle layer, the most accurate bundled pair on the text benchmarks.
DEFAULTS = {
    "image": ModalityDefaults(encoder=BUNDLED_BACKBONE, method="protonet"),
    "text": ModalityDefaults(encoder=f"{BUNDLED_ENCODER}:layers", method="linear"),
}
#: Each modality's configured default (from the environment, checked), None where none is set.
CONFIGURED = {"image": configured_backbone, "text": configured_encoder}


def _check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise UserInputError(f"modality must be 'image' or 'text', not {modality!r}")
    return modality


def default_encoder(modality: str) -> str:
    """The encoder id a modality uses by default: the one ``FEWSHOT_DEFAULT_BACKBONE`` (images) or
    ``FEWSHOT_DEFAULT_TEXT_ENCODER`` (text) names, else the bundled one.

    Raises:
        UserInputError: when the variable names no backbone or encoder on offer (the app then stops at start).
    """
    modality = _check_modality(modality)
    return CONFIGURED[modality]() or DEFAULTS[modality].encoder


def default_method(modality: str) -> str:
    """The method key a modality uses by default."""
    return DEFAULTS[_check_modality(modality)].method


def modality_of(encoder_id: str) -> str | None:
    """"image" for an image backbone id, "text" for a text encoder id (with or without ``:pooling``),
    None for any other id (features the caller made itself: only "features" methods apply)."""
    if encoder_id in BACKBONES:
        return "image"
    if encoder_id.partition(":")[0] in ENCODERS:
        return "text"
    return None


def input_kinds(encoder_id: str) -> tuple[str, ...]:
    """The input kinds a backbone or encoder can prepare for learners, without loading it."""
    modality = modality_of(encoder_id)
    if modality == "image":
        return BACKBONES[encoder_id].input_kinds
    if modality == "text":
        return ("features", TOKENS)
    return ("features",)


def gives_vectors(encoder_id: str) -> bool:
    """False for ``pixels28``, whose "features" are 28x28 images only the Conv-4 networks read."""
    return encoder_id not in BACKBONES or BACKBONES[encoder_id].feature_vectors


def get_encoder(encoder_id: str, device: torch.device | str | None = None) -> Encoder:
    """The (shared, cached) backbone or text encoder of an id.

    Raises:
        UserInputError: for an id that names neither.
        BackboneUnavailableError, EncoderUnavailableError: when a hub model cannot be downloaded.
    """
    modality = modality_of(str(encoder_id))
    if modality == "image":
        return load_backbone(encoder_id, device)
    if modality == "text":
        return load_encoder(encoder_id, device)
    known = ", ".join([*BACKBONES, *ENCODERS])
    raise UserInputError(f"unknown backbone or encoder {encoder_id!r}; choose from {known}")
