"""Small networks that meta-learners train: a projection over pretrained features and Conv-4.

Both map a batch of inputs to (n, embed_dim) embeddings. Classifier heads are not part of a
network: a few-shot head has one row per class of the user's task, and the user chooses n_way, so
heads are built per task by the methods (zero rows for MAML, prototypes for ProtoNet).

Every network can describe itself with ``architecture()`` (a JSON-able dict stored in checkpoint
configs) and be rebuilt from it with ``build_network``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.methods.features import FeatureNormalizer, NormalizationConfig
from fewshot_demo.runtime.device import one_thread  # noqa: F401  (re-exported for the learners)


class FeatureProjection(nn.Module):
    """A learned, identity-initialised map of frozen backbone features, then L2 normalisation and a scale.

    In the spirit of P>M>F (Hu et al., CVPR 2022: pre-train, meta-train, fine-tune): the backbone
    stays frozen and only this light map is meta-trained. It is a per-dimension gain plus a
    low-rank residual, h = x * (1 + gain) + B (A x), with ``gain`` and ``B`` zero at initialisation.
    Why this shape: the base classes available offline are a few hundred images, so a full
    (d, d') projection overfits them and loses to the pretrained geometry on new classes (measured:
    validation accuracy fell while training a 1280->256 projection). Starting exactly at the
    identity means the untrained network *is* the cosine-prototype baseline, and meta-training
    can only move away from it as far as validation on held-out classes supports.

    Args:
        feature_dim: size of the backbone's features (1280 for EfficientNet-Lite0).
        rank: rank of the residual map.
        init_scale: initial value of the learned scale applied after L2 normalisation; it sets how
            peaked the softmax over classes can be.
    """

    kind = "projection"

    def __init__(self, feature_dim: int, rank: int = 32, init_scale: float = 10.0) -> None:
        super().__init__()
        if feature_dim < 1 or rank < 1:
            raise UserInputError(f"feature_dim and rank must be positive, got {feature_dim}, {rank}")
        self.feature_dim = feature_dim
        self.embed_dim = feature_dim
        self.rank = rank
        self.init_scale = init_scale
        self.gain = nn.Parameter(torch.zeros(feature_dim))
        self.down = nn.Parameter(torch.empty(rank, feature_dim))
        nn.init.orthogonal_(self.down)
        self.up = nn.Parameter(torch.zeros(feature_dim, rank))
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.feature_dim,)

    def forward(self, features: Tensor) -> Tensor:
        """Map (n, feature_dim) normalised features to (n, feature_dim) embeddings of norm exp(log_scale)."""
        hidden = features * (1 + self.gain) + (features @ self.down.T) @ self.up.T  # (n, feature_dim)
        return self.log_scale.exp() * F.normalize(hidden, dim=-1)

    def architecture(self) -> dict[str, Any]:
        return {"kind": self.kind, "feature_dim": self.feature_dim, "rank": self.rank, "init_scale": self.init_scale}


class Conv4(nn.Module):
    """The four-block convolutional network of the few-shot literature.

    Vinyals et al. (NeurIPS 2016), Finn et al. (ICML 2017) and Snell et al. (NeurIPS 2017) all use
    it: four blocks of 3x3 convolution, normalisation, ReLU and 2x2 max-pooling. A 28x28 input ends
    as a (hidden, 1, 1) map, so the embedding has ``hidden`` values.

    GroupNorm replaces BatchNorm on purpose: it normalises each image on its own, so predictions do
    not depend on which other queries share the batch (MAML's batch statistics are transductive), a
    single image can be classified, and there are no running statistics to carry through
    ``torch.func.functional_call``.

    Args:
        in_channels: 1 for grayscale.
        hidden: channels per block (64 in the papers; 32 trains about twice as fast on a CPU).
        image_size: square input side; 28 for the ``pixels28`` backbone.
    """

    kind = "conv4"

    def __init__(self, in_channels: int = 1, hidden: int = 32, image_size: int = 28) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        self.image_size = image_size
        blocks = []
        channels = in_channels
        for _ in range(4):
            blocks += [
                nn.Conv2d(channels, hidden, kernel_size=3, padding=1),
                nn.GroupNorm(num_groups=min(8, hidden), num_channels=hidden),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = hidden
        self.blocks = nn.Sequential(*blocks)
        side = image_size
        for _ in range(4):
            side //= 2
        if side < 1:
            raise UserInputError(f"Conv4 needs images of at least 16x16 pixels, got {image_size}")
        self.embed_dim = hidden * side * side

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)

    def forward(self, images: Tensor) -> Tensor:
        """Map (n, in_channels, size, size) images to (n, embed_dim) embeddings."""
        return self.blocks(images).flatten(1)  # (n, embed_dim)

    def architecture(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "in_channels": self.in_channels,
            "hidden": self.hidden,
            "image_size": self.image_size,
        }


EmbeddingNetwork = FeatureProjection | Conv4


def build_network(architecture: dict[str, Any]) -> EmbeddingNetwork:
    """Rebuild a network from its ``architecture()`` dict.

    Raises:
        UserInputError: for an unknown kind or bad settings.
    """
    settings = dict(architecture)
    kind = settings.pop("kind", None)
    try:
        if kind == FeatureProjection.kind:
            return FeatureProjection(**settings)
        if kind == Conv4.kind:
            return Conv4(**settings)
    except TypeError as error:
        raise UserInputError(f"bad {kind} architecture {architecture}: {error}") from None
    raise UserInputError(f"unknown network kind {kind!r}; expected 'projection' or 'conv4'")


def check_inputs(network: EmbeddingNetwork, inputs: Tensor, what: str = "inputs") -> None:
    """Check that inputs have the shape the network reads.

    Raises:
        UserInputError: naming the expected shape and the backbone that produces it.
    """
    expected = tuple(network.input_shape)
    if inputs.ndim != len(expected) + 1 or tuple(inputs.shape[1:]) != expected:
        hint = (
            "use the 'pixels28' backbone, which gives (n, 1, 28, 28) images"
            if isinstance(network, Conv4)
            else f"use the backbone this network was meta-trained on ({expected[0]}-d features)"
        )
        raise UserInputError(f"{what} have shape {tuple(inputs.shape)}, expected (n, {', '.join(map(str, expected))}); {hint}")


def prepare_episode(network: EmbeddingNetwork, support: Tensor, query: Tensor | None = None) -> tuple[Tensor, Tensor | None, FeatureNormalizer | None]:
    """Apply the input normalisation a network expects, fitted on the support set only.

    Pretrained features go through the shared ``FeatureNormalizer`` (power transform, L2, centring
    on the support mean, L2), the same transform the plain ProtoNet and the linear probe use, so the
    untrained and meta-trained methods see identical inputs. Images are used as they are.

    Returns:
        (support, query, normalizer): normalised tensors and the fitted normaliser (None for images).
    """
    if not isinstance(network, FeatureProjection):
        return support.float(), None if query is None else query.float(), None
    normalizer = FeatureNormalizer(NormalizationConfig()).fit(support)
    return normalizer(support), None if query is None else normalizer(query), normalizer


