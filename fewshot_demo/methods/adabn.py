"""AdaBN: adapt a pretrained backbone's batch normalisation to the user's images, without labels."""

from __future__ import annotations

import copy
import types
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_demo.config.errors import InputKindUnsupportedError, UserInputError
from fewshot_demo.config.options import bounded
from fewshot_demo.encoders.image import BACKBONES, load_backbone
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.protonet import PrototypicalNetwork

#: The input kind of this learner: whole preprocessed images, (n, 3, 224, 224) for EfficientNet-Lite0,
#: made by ``ImageBackbone.prepare("pixels224", images)``: the backbone has to run again on them.
PIXELS224 = "pixels224"


@dataclass(frozen=True)
class AdaBNConfig:
    """Settings of AdaBN.

    Attributes:
        target_weight: the share of the episode's own statistics in every batch-normalisation layer's
            mean and variance: 1 replaces the ImageNet statistics (AdaBN), 0 keeps them (prototypes
            on the pretrained features); in between mixes the two (as Schneider et al. 2020 do when
            few target images are available).
    """

    target_weight: float = bounded(1.0, 0.0, 1.0, "Share of the episode's statistics")

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_weight <= 1.0:
            raise UserInputError(f"target_weight is a share in [0, 1], got {self.target_weight}")


def _adapted_forward(self: nn.BatchNorm2d, inputs: Tensor) -> Tensor:
    """A batch-norm layer's forward with statistics mixed from the batch and the pretrained ones.

    Works for ``nn.BatchNorm2d`` and timm's ``BatchNormAct2d`` (which adds dropout and an activation).
    """
    weight = self._target_weight
    mean = inputs.mean(dim=(0, 2, 3))
    var = inputs.var(dim=(0, 2, 3), unbiased=False)
    mean = weight * mean + (1 - weight) * self.running_mean
    var = weight * var + (1 - weight) * self.running_var
    out = F.batch_norm(inputs, mean, var, self.weight, self.bias, training=False, eps=self.eps)
    for name in ("drop", "act"):  # timm's BatchNormAct2d
        module = getattr(self, name, None)
        if module is not None:
            out = module(out)
    return out


def adapt_batch_norm(model: nn.Module, target_weight: float) -> nn.Module:
    """A frozen copy of ``model`` whose batch-norm layers normalise with the statistics of the batch
    they are given (mixed with the pretrained ones by ``target_weight``); ``model`` is not modified.

    Run the whole unlabelled set through it as one batch: every layer then sees the statistics of
    its input as the layers before it adapted it, which is AdaBN's layer-by-layer re-estimation.
    """
    adapted = copy.deepcopy(model).eval().requires_grad_(False)
    for module in adapted.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module._target_weight = target_weight
            module.forward = types.MethodType(_adapted_forward, module)
    return adapted


class AdaBN(FewShotLearner):
    """AdaBN (Li, Wang, Shi, Hou & Liu, "Revisiting Batch Normalization For Practical Domain
    Adaptation", ICLR workshop 2017; Pattern Recognition 2018), then prototypes.

    A network pretrained on ImageNet normalises every layer with ImageNet's mean and variance; on
    images from another domain (grayscale garments, cartoons) those statistics are off. AdaBN
    re-estimates them on the target images, with no labels and no gradient step. Here the target
    images are the episode's support and query images together: the backbone runs once on all of
    them with its batch-norm layers normalising by their statistics, then each class is the mean of
    its support features and queries go to the nearest one (``PrototypicalNetwork``, on the same
    feature normalisation as ``protonet_plain``, so ``target_weight=0`` is exactly that method).

    Transductive: a query's prediction depends on the other queries of the batch through the
    statistics. Each call of ``predict_proba`` re-estimates them on the support plus that call's
    queries. Costs a forward pass of the backbone over every image of the episode.

    Args:
        backbone_model: the pretrained network (copied, never modified); its output is the pooled
            features.
        config: see ``AdaBNConfig``.
    """

    def __init__(self, backbone_model: nn.Module, config: AdaBNConfig | None = None) -> None:
        super().__init__()
        self.settings = config or AdaBNConfig()
        self.model = adapt_batch_norm(backbone_model, self.settings.target_weight)
        self.support: Tensor | None = None  # (n_support, 3, h, w)
        self.support_labels: Tensor | None = None

    def fit(self, support: Tensor, support_labels: Tensor) -> "AdaBN":
        """Keep the (n_support, 3, h, w) support images; the work happens with the queries."""
        if support.ndim != 4:
            raise UserInputError(
                f"AdaBN consumes (n, 3, h, w) images from the backbone's prepare('{PIXELS224}', images), "
                f"got shape {tuple(support.shape)}"
            )
        self.n_way = check_support(support, support_labels)
        self.support, self.support_labels = support, support_labels
        return self

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        """Return (n_query, n_way) probabilities for (n_query, 3, h, w) query images."""
        self._require_fitted()
        assert self.support is not None and self.support_labels is not None
        device = next(self.model.parameters()).device
        features = self.model(torch.cat([self.support, query.to(self.support.device)]).to(device))  # (n_s + n_q, d)
        prototypes = PrototypicalNetwork().fit(features[: len(self.support)], self.support_labels.to(device))
        return prototypes.predict_proba(features[len(self.support) :])  # (n_query, n_way)

    def config(self) -> dict[str, Any]:
        return asdict(self.settings)


def make_adabn(backbone_id: str, device: torch.device, config: AdaBNConfig | None = None) -> AdaBN:
    """Build an ``AdaBN`` learner on the shared backbone ``backbone_id``.

    Raises:
        InputKindUnsupportedError: for a backbone that cannot prepare whole images or has no batch norm.
    """
    if PIXELS224 not in BACKBONES[backbone_id].input_kinds:
        raise InputKindUnsupportedError(
            f"adabn re-estimates the batch normalisation of a pretrained network; {backbone_id!r} has none to adapt. "
            "Use efficientnet_lite0"
        )
    return AdaBN(load_backbone(backbone_id, device).model, config)
