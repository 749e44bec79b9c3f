"""The learner registry: every method behind one name and one contract.

``make_learner(name, context)`` builds a fresh, unfitted learner. The context says which backbone
produced the features and on which device, so meta-trained learners can find their checkpoint.
New methods register themselves with ``register``; the bench command, the UI and the comparison tab
only ever loop over names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.protonet import PrototypicalNetwork
from fewshot_demo.methods.transductive import TransductivePrototypes


@dataclass(frozen=True)
class LearnerContext:
    """Where a learner will run.

    Attributes:
        backbone_id: registry id of the backbone or encoder that produced the features.
        feature_dim: size of one feature vector.
        device: where tensors live.
    """

    backbone_id: str = ""
    feature_dim: int = 0
    device: torch.device = torch.device("cpu")


LearnerFactory = Callable[..., FewShotLearner]  # factory(context, **options)
_REGISTRY: dict[str, tuple[LearnerFactory, str]] = {}


def register(name: str, factory: LearnerFactory, description: str) -> None:
    """Make a learner available under ``name``."""
    _REGISTRY[name] = (factory, description)


def available_methods() -> dict[str, str]:
    """Return {method name: one-line description}."""
    return {name: description for name, (_, description) in _REGISTRY.items()}


def make_learner(name: str, context: LearnerContext | None = None, **options: object) -> FewShotLearner:
    """Build a fresh learner by method name.

    ``options`` (e.g. inner steps and step size for MAML) go to the factory as keyword arguments;
    factories that take none are called with the context alone.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(_REGISTRY)}")
    factory = _REGISTRY[name][0]
    context = context or LearnerContext()
    return factory(context, **options) if options else factory(context)


register("protonet", lambda context: PrototypicalNetwork(), "Prototypical Networks (Snell et al. 2017)")
register("linear", lambda context: LinearProbe(), "Linear probe: logistic regression on frozen features")
# Transductive: predictions use the whole query batch (fair when a batch is classified together).
register(
    "protonet_transductive",
    lambda context: TransductivePrototypes(),
    "Transductive ProtoNet: prototypes refined by soft k-means over the query batch (Ren et al. 2018)",
)
register(
    "ptmap",
    lambda context: TransductivePrototypes(temperature=10.0, n_iter=20, balanced=True, step=0.2),
    "PT-MAP-style transductive prototypes assuming a class-balanced query batch (Hu et al. 2021)",
)

__all__ = [
    "FewShotLearner",
    "LearnerContext",
    "LinearProbe",
    "PrototypicalNetwork",
    "available_methods",
    "check_support",
    "make_learner",
    "register",
]


# Meta-learning (MAML, FOMAML, Reptile, Matching Networks, meta-trained ProtoNet) and the untrained
# baselines that show what meta-training adds. Checkpoints load lazily, when a learner is built.
def _meta(method: str) -> LearnerFactory:
    def factory(context: LearnerContext, **options: object) -> FewShotLearner:
        """Options for maml, fomaml, reptile: inner_steps, inner_lr, on_step (see ``MAML``)."""
        from fewshot_demo.checkpoints import make_meta_learner

        return make_meta_learner(method, context.backbone_id, context.feature_dim, context.device, **options)

    return factory


def _protonet(context: LearnerContext) -> FewShotLearner:
    """Meta-trained ProtoNet when a checkpoint exists for the backbone, else the plain one."""
    from fewshot_demo.checkpoints import find_checkpoint, make_meta_learner

    if context.backbone_id and find_checkpoint("protonet", context.backbone_id) is not None:
        return make_meta_learner("protonet", context.backbone_id, context.feature_dim, context.device)
    return _protonet_plain(context)


def _protonet_plain(context: LearnerContext) -> FewShotLearner:
    """Untrained prototypes: on the features as they are, or on a random Conv-4 for pixels28."""
    if context.backbone_id != "pixels28":
        return PrototypicalNetwork()
    from fewshot_demo.checkpoints import untrained_network
    from fewshot_demo.methods.meta_protonet import MetaPrototypicalNetwork

    return MetaPrototypicalNetwork(untrained_network(context.backbone_id, context.feature_dim, context.device))


def _maml_scratch(context: LearnerContext, **options: object) -> FewShotLearner:
    from fewshot_demo.checkpoints import make_scratch_maml

    return make_scratch_maml(context.backbone_id, context.feature_dim, context.device, **options)


register("maml", _meta("maml"), "MAML (Finn et al. 2017): meta-learned init, adapted by gradient steps")
register("fomaml", _meta("fomaml"), "First-order MAML (Finn et al. 2017), meta-trained without 2nd derivatives")
register("reptile", _meta("reptile"), "Reptile (Nichol et al. 2018): first-order meta-learned init")
register("matchingnet", _meta("matchingnet"), "Matching Networks (Vinyals et al. 2016): attention over the support")
register("protonet", _protonet, "Prototypical Networks (Snell et al. 2017), meta-trained when a checkpoint exists")
register("protonet_plain", _protonet_plain, "Untrained ProtoNet baseline (plain features, or a random Conv-4)")
register("maml_scratch", _maml_scratch, "MAML's adaptation from a random init: the no-meta-training baseline")


# Text: fine-tuning the encoder itself (consumes token tensors from the text encoder's prepare()).
def _text_finetune(context: LearnerContext, **options: object) -> FewShotLearner:
    from fewshot_demo.methods.text_finetune import make_text_finetune

    return make_text_finetune(context.backbone_id, context.device, **options)


register(
    "finetune",
    _text_finetune,
    "Fine-tune the text encoder's top layers on the support set (SetFit-style contrastive), then a linear head",
)


# Transfer baselines of the comparison tab. "finetune" has an image and a text version: one factory
# picks by what produced the inputs (an image backbone id, or a text encoder id).
def _baselinepp(context: LearnerContext, **options: object) -> FewShotLearner:
    from fewshot_demo.methods.baselinepp import BaselinePlusPlus, BaselinePPConfig

    return BaselinePlusPlus(BaselinePPConfig(**options))  # type: ignore[arg-type]


def _finetune(context: LearnerContext, **options: object) -> FewShotLearner:
    """Image fine-tuning (last block + new head) for an image backbone, else the text fine-tune."""
    from fewshot_demo.backbones import BACKBONES

    if context.backbone_id in BACKBONES:
        from fewshot_demo.methods.finetune import make_image_finetune

        return make_image_finetune(context.backbone_id, context.device, **options)
    return _text_finetune(context, **options)


register("baselinepp", _baselinepp, "Baseline++ (Chen et al. 2019): cosine classifier with a learned scale, trained on the support")
register(
    "finetune",
    _finetune,
    "Fine-tuning: images, the backbone's last block plus a new head; text, the encoder's top layers "
    "(SetFit-style), then a linear head",
)
