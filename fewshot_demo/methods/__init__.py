"""Every few-shot method behind one contract, and the catalog that lists them.

A learner follows ``FewShotLearner`` (``fit(support, labels)`` then ``predict_proba(query)``); its
``MethodSpec`` below says everything else: label, family, modalities, input kind, options with
bounds, cost, checkpoints and the meta-training recipe. Adding a method is one learner file plus one
entry here; the bench, the three tabs, the comparison report, the text peers and the training
command then offer it wherever ``MethodSpec.unavailable_reason`` allows.
"""

from __future__ import annotations

from typing import Any

from fewshot_demo.methods.adabn import PIXELS224, AdaBNConfig
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.baselinepp import BaselinePlusPlus, BaselinePPConfig
from fewshot_demo.methods.finetune import LAST_BLOCK_INPUT, ImageFinetuneConfig
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.mae import MAE_RECIPE
from fewshot_demo.methods.maml import FOMAML_RECIPE, MAML_RECIPE, AdaptationOptions
from fewshot_demo.methods.matchingnet import MATCHINGNET_RECIPE
from fewshot_demo.methods.meta_protonet import PROTONET_RECIPE
from fewshot_demo.methods.protonet import PrototypicalNetwork
from fewshot_demo.methods.registry import (
    LearnerContext,
    MethodSpec,
    all_methods,
    available_methods,
    cheapest_first,
    get_method,
    make_learner,
    methods_for,
    modality_of,
    options_dict,
    register,
)
from fewshot_demo.methods.reptile import REPTILE_RECIPE
from fewshot_demo.methods.simclr import SIMCLR_RECIPE
from fewshot_demo.methods.transductive import TransductivePrototypes
from fewshot_demo.text.finetune import FinetuneConfig

__all__ = [
    "FewShotLearner",
    "LearnerContext",
    "LinearProbe",
    "MethodSpec",
    "PrototypicalNetwork",
    "all_methods",
    "available_methods",
    "cheapest_first",
    "check_support",
    "get_method",
    "make_learner",
    "methods_for",
    "modality_of",
    "options_dict",
    "register",
]


# ---- factories: (context, options) -> a fresh learner --------------------------------------------
def _linear(context: LearnerContext, options: Any) -> FewShotLearner:
    return LinearProbe()


def _baselinepp(context: LearnerContext, options: BaselinePPConfig | None) -> FewShotLearner:
    return BaselinePlusPlus(options)


def _finetune(context: LearnerContext, options: Any) -> FewShotLearner:
    """Images: the backbone's last block plus a new head; text: the encoder's top layers."""
    from fewshot_demo.backbones import BACKBONES

    if context.backbone_id in BACKBONES:
        from fewshot_demo.methods.finetune import make_image_finetune

        return make_image_finetune(context.backbone_id, context.device, options)
    from fewshot_demo.methods.text_finetune import make_text_finetune

    return make_text_finetune(context.backbone_id, context.device, options)


def _adabn(context: LearnerContext, options: AdaBNConfig | None) -> FewShotLearner:
    from fewshot_demo.methods.adabn import make_adabn

    return make_adabn(context.backbone_id, context.device, options)


def _meta_trained(key: str):
    def build(context: LearnerContext, options: Any) -> FewShotLearner:
        from fewshot_demo.checkpoints import make_meta_learner

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
    from fewshot_demo.checkpoints import untrained_network
    from fewshot_demo.methods.meta_protonet import MetaPrototypicalNetwork

    return MetaPrototypicalNetwork(untrained_network(context.backbone_id, context.feature_dim, context.device))


def _linear_plain(context: LearnerContext, options: Any) -> FewShotLearner:
    """The self-supervised methods' head on the Conv-4 they start from, with its random weights."""
    from fewshot_demo.checkpoints import untrained_network
    from fewshot_demo.methods.encoder_probe import EncoderLinearProbe

    return EncoderLinearProbe(untrained_network(context.backbone_id, context.feature_dim, context.device))


def _maml_scratch(context: LearnerContext, options: AdaptationOptions | None) -> FewShotLearner:
    from fewshot_demo.checkpoints import make_scratch_maml

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
    key="finetune", label="Fine-tuning", family="transfer", build=_finetune, cost="slow",
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
