"""The catalog: one ``MethodSpec`` per method, and the factories that build each learner.

A learner follows ``FewShotLearner`` (``fit(support, labels)`` then ``predict_proba(query)``); its
``MethodSpec`` below says everything else: label, family, modalities, input kind, options with
bounds, cost, checkpoints and the meta-training recipe. Adding a method is one learner file plus one
entry here; the bench, the three tabs, the comparison report, the text peers and the training
command then offer it wherever ``MethodSpec.unavailable_reason`` allows.

The meta-trained learners are built here from their checkpoints (``checkpoint_store``), and their
no-meta-training controls from the same architecture with fresh weights.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import torch

from fewshot_demo.config.errors import CheckpointMissingError, UserInputError
from fewshot_demo.methods.adabn import PIXELS224, AdaBNConfig, make_adabn
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.methods.baselinepp import BaselinePlusPlus, BaselinePPConfig
from fewshot_demo.methods.checkpoint_index import CONFIG_FILE, find_checkpoint
from fewshot_demo.methods.checkpoint_store import load_checkpoint
from fewshot_demo.methods.encoder_probe import EncoderLinearProbe
from fewshot_demo.methods.finetune import (
    LAST_BLOCK_INPUT,
    ImageFinetuneConfig,
    make_image_finetune,
)
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.mae import MAE_RECIPE
from fewshot_demo.methods.maml import (
    FOMAML_RECIPE,
    MAML,
    MAML_RECIPE,
    AdaptationOptions,
    MAMLConfig,
)
from fewshot_demo.methods.matchingnet import MATCHINGNET_RECIPE
from fewshot_demo.methods.meta_protonet import PROTONET_RECIPE, MetaPrototypicalNetwork
from fewshot_demo.methods.networks import EmbeddingNetwork, build_network
from fewshot_demo.methods.protonet import PrototypicalNetwork
from fewshot_demo.methods.registry import (
    LearnerContext,
    MethodSpec,
    get_method,
    recipe_of,
    register,
)
from fewshot_demo.methods.reptile import REPTILE_RECIPE
from fewshot_demo.methods.simclr import SIMCLR_RECIPE
from fewshot_demo.methods.text_finetune import make_text_finetune
from fewshot_demo.methods.text_tuning import FinetuneConfig
from fewshot_demo.methods.transductive import TransductivePrototypes


# ---- learners from checkpoints -----------------------------------------------------------------
def _architecture_for(backbone_id: str, feature_dim: int, reference: dict[str, Any] | None) -> dict[str, Any]:
    if reference is not None:
        return dict(reference["architecture"])
    if backbone_id == "pixels28":
        return {"kind": "conv4", "in_channels": 1, "hidden": 32, "image_size": 28}
    if feature_dim < 1:
        raise UserInputError("the learner context has no feature_dim; pass the backbone's feature size")
    return {"kind": "projection", "feature_dim": int(feature_dim), "rank": 32, "init_scale": 10.0}


@functools.lru_cache(maxsize=16)
def _untrained_network(architecture_json: str, device: str, seed: int) -> EmbeddingNetwork:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_network(json.loads(architecture_json))
    network = network.to(torch.device(device)).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def untrained_network(backbone_id: str, feature_dim: int, device: torch.device | str = "cpu", seed: int = 0) -> EmbeddingNetwork:
    """The network a meta-learner would start from, freshly initialised with a fixed seed.

    Same architecture as the shipped MAML checkpoint for the backbone when there is one.
    """
    folder = find_checkpoint("maml", backbone_id)
    reference = json.loads((folder / CONFIG_FILE).read_text()) if folder is not None else None
    architecture = _architecture_for(backbone_id, feature_dim, reference)
    return _untrained_network(json.dumps(architecture, sort_keys=True), str(torch.device(device)), seed)


def make_meta_learner(method: str, backbone_id: str, feature_dim: int = 0, device: torch.device | str = "cpu",
                      options: Any = None):
    """Build the meta-trained learner ``method`` from its checkpoint for ``backbone_id``.

    Args:
        method: a method with a meta-training recipe (``meta_trained_methods()``).
        options: the method's options instance (for MAML-style learners ``AdaptationOptions``), or None.

    Raises:
        CheckpointMissingError: when there is no checkpoint for this backbone, saying how to make one.
        UserInputError: when the checkpoint is invalid.
    """
    folder = find_checkpoint(method, backbone_id)
    if folder is None:
        raise CheckpointMissingError(
            f"no meta-trained {method!r} checkpoint for backbone {backbone_id!r}; train one with "
            f"`python -m fewshot_demo.train --method {method} --backbone {backbone_id}` "
            f"(checkpoints ship for efficientnet_lite0 and pixels28), or use 'protonet' or 'linear'"
        )
    # pixels28 inputs are (n, 1, 28, 28); callers may pass their second axis as feature_dim, so the
    # input shape is checked at fit time instead.
    expected_dim = None if backbone_id == "pixels28" else feature_dim or None
    checkpoint = load_checkpoint(folder, method=method, backbone_id=backbone_id, feature_dim=expected_dim, device=device)
    recipe = recipe_of(method)
    return recipe.learner(checkpoint.network, checkpoint.extras, recipe.settings_from(checkpoint.config), options)


def make_scratch_maml(backbone_id: str, feature_dim: int = 0, device: torch.device | str = "cpu", options: Any = None):
    """MAML's adaptation (same steps and base step size as the shipped checkpoint) from a random network.

    The baseline that shows what meta-training adds: without it, MAML is fine-tuning from zero.
    """
    folder = find_checkpoint("maml", backbone_id)
    settings = json.loads((folder / CONFIG_FILE).read_text())["maml"] if folder is not None else {}
    config = MAMLConfig(**{**settings, "learn_inner_lr": False})
    options = options or AdaptationOptions()
    learner = MAML(untrained_network(backbone_id, feature_dim, device), config, None,
                   inner_steps=options.inner_steps, inner_lr=options.inner_lr)
    return learner


# ---- factories: (context, options) -> a fresh learner --------------------------------------------
def _linear(context: LearnerContext, options: Any) -> FewShotLearner:
    return LinearProbe()


def _baselinepp(context: LearnerContext, options: BaselinePPConfig | None) -> FewShotLearner:
    return BaselinePlusPlus(options)


def _image_finetune(context: LearnerContext, options: Any) -> FewShotLearner:
    """The backbone's last block plus a new head."""
    return make_image_finetune(context.backbone_id, context.device, options)


def _text_finetune(context: LearnerContext, options: Any) -> FewShotLearner:
    """The encoder's top layers, then a linear head."""
    return make_text_finetune(context.backbone_id, context.device, options)


def _adabn(context: LearnerContext, options: AdaBNConfig | None) -> FewShotLearner:
    return make_adabn(context.backbone_id, context.device, options)


def _meta_trained(key: str):
    def build(context: LearnerContext, options: Any) -> FewShotLearner:
        return make_meta_learner(key, context.backbone_id, context.feature_dim, context.device, options)

    return build


def _protonet(context: LearnerContext, options: Any) -> FewShotLearner:
    """Meta-trained ProtoNet where a checkpoint exists for the backbone, else plain prototypes."""
    if context.backbone_id and get_method("protonet").family_for(context.backbone_id) == "meta":
        return _meta_trained("protonet")(context, options)
    return PrototypicalNetwork()


def _protonet_plain(context: LearnerContext, options: Any) -> FewShotLearner:
    """Untrained prototypes: on the features as they are, or on a random Conv-4 for pixels28."""
    if context.backbone_id != "pixels28":
        return PrototypicalNetwork()
    return MetaPrototypicalNetwork(untrained_network(context.backbone_id, context.feature_dim, context.device))


def _linear_plain(context: LearnerContext, options: Any) -> FewShotLearner:
    """The self-supervised methods' head on the Conv-4 they start from, with its random weights."""
    return EncoderLinearProbe(untrained_network(context.backbone_id, context.feature_dim, context.device))


def _maml_scratch(context: LearnerContext, options: AdaptationOptions | None) -> FewShotLearner:
    return make_scratch_maml(context.backbone_id, context.feature_dim, context.device, options)


def _transductive(**settings: Any):
    def build(context: LearnerContext, options: Any) -> FewShotLearner:
        return TransductivePrototypes(**settings)

    return build


# ---- the catalog: one entry per method, in the order tables list them ----------------------------
register(MethodSpec(
    key="linear", label="Linear probe", family="transfer", build=_linear,
    description="Linear probe: logistic regression on frozen features (Chen et al. 2019; Tian et al. 2020)",
))
register(MethodSpec(
    key="baselinepp", label="Baseline++", family="transfer", build=_baselinepp, options=BaselinePPConfig,
    description="Baseline++ (Chen et al. 2019): cosine classifier with a learned scale, trained on the support",
))
register(MethodSpec(
    key="finetune", label="Fine-tuning", family="transfer", build={"image": _image_finetune, "text": _text_finetune}, cost="slow",
    input_kinds={"image": LAST_BLOCK_INPUT, "text": "tokens"},
    options={"image": ImageFinetuneConfig, "text": FinetuneConfig},
    description="Fine-tuning (Chen et al. 2019): images, the backbone's last block plus a new head; text, the "
    "encoder's top layers SetFit-style (Tunstall et al. 2022), then a linear head",
))
register(MethodSpec(
    key="protonet", label="ProtoNet", family="meta", build=_protonet, cost="instant", checkpoint="optional",
    recipe=PROTONET_RECIPE,
    description="Prototypical Networks (Snell et al. 2017), meta-trained where a checkpoint exists, else on the "
    "frozen features",
))
register(MethodSpec(
    key="maml", label="MAML", family="meta", build=_meta_trained("maml"), checkpoint="required",
    options=AdaptationOptions, recipe=MAML_RECIPE,
    description="MAML (Finn et al. 2017): meta-learned init, adapted by gradient steps",
))
register(MethodSpec(
    key="fomaml", label="FOMAML", family="meta", build=_meta_trained("fomaml"), checkpoint="required",
    options=AdaptationOptions, recipe=FOMAML_RECIPE,
    description="First-order MAML (Finn et al. 2017), meta-trained without 2nd derivatives",
))
register(MethodSpec(
    key="reptile", label="Reptile", family="meta", build=_meta_trained("reptile"), checkpoint="required",
    options=AdaptationOptions, recipe=REPTILE_RECIPE,
    description="Reptile (Nichol et al. 2018): first-order meta-learned init",
))
register(MethodSpec(
    key="matchingnet", label="Matching Net", family="meta", build=_meta_trained("matchingnet"), cost="instant",
    checkpoint="required", recipe=MATCHINGNET_RECIPE,
    description="Matching Networks (Vinyals et al. 2016): attention over the support",
))
register(MethodSpec(
    key="simclr", label="SimCLR", family="self-supervised", build=_meta_trained("simclr"), cost="instant",
    checkpoint="required", recipe=SIMCLR_RECIPE,
    description="SimCLR (Chen et al. 2020): Conv-4 pretrained without labels by contrasting two views of each "
    "image; a linear head on its frozen embedding",
))
register(MethodSpec(
    key="mae", label="Masked autoencoder", family="self-supervised", build=_meta_trained("mae"), cost="instant",
    checkpoint="required", recipe=MAE_RECIPE,
    description="Masked autoencoder (He et al. 2022): Conv-4 pretrained without labels by reconstructing 75% "
    "hidden patches; a linear head on its frozen embedding",
))
register(MethodSpec(
    key="protonet_plain", label="ProtoNet, no meta-training", family="baseline", build=_protonet_plain,
    cost="instant", baseline_of="protonet",
    description="Untrained ProtoNet baseline (plain features, or a random Conv-4)",
))
register(MethodSpec(
    key="maml_scratch", label="MAML from a random init", family="baseline", build=_maml_scratch,
    options=AdaptationOptions, baseline_of="maml",
    description="MAML's adaptation from a random init: the no-meta-training baseline",
))
register(MethodSpec(
    key="linear_plain", label="Linear head, no pretraining", family="baseline", build=_linear_plain,
    cost="instant", baseline_of="simclr",
    description="Untrained control of the self-supervised methods: their linear head on the same Conv-4 with its "
    "random initial weights",
))
register(MethodSpec(
    key="adabn", label="AdaBN", family="transfer", build=_adabn, modalities=("image",), transductive=True,
    input_kinds={"image": PIXELS224}, options=AdaBNConfig, cost="slow", savable=False,
    description="AdaBN (Li et al. 2017): the backbone's batch-norm statistics re-estimated on the episode's "
    "support and query images (no labels), then prototypes",
))
register(MethodSpec(
    key="protonet_transductive", label="Transductive ProtoNet", family="transfer", transductive=True,
    build=_transductive(), savable=False,
    description="Transductive ProtoNet: prototypes refined by soft k-means over the query batch (Ren et al. 2018)",
))
register(MethodSpec(
    key="ptmap", label="PT-MAP-style", family="transfer", transductive=True, savable=False,
    build=_transductive(temperature=10.0, n_iter=20, balanced=True, step=0.2),
    description="PT-MAP-style transductive prototypes assuming a class-balanced query batch (Hu et al. 2021)",
))
