"""The method registry: one ``MethodSpec`` per method, the one place a method's knowledge lives.

The bench, the three tabs, the comparison report, the text peers and the training command read
their method lists, labels, families and options from here, so adding a method is one new file
(the learner) plus one ``MethodSpec`` entry in ``fewshot_demo/methods/__init__.py``.

    spec = get_method("maml")
    spec.unavailable_reason("image", "efficientnet_lite0")   # None: it runs there
    learner = make_learner("maml", LearnerContext("efficientnet_lite0", 1280), inner_steps=3)
    [s.key for s in methods_for("text", "minilm")]          # what the text tab lists
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from fewshot_demo.config.errors import (
    CheckpointMissingError,
    InputKindUnsupportedError,
    MethodNotApplicableError,
    UserInputError,
)
from fewshot_demo.config.options import bounded  # noqa: F401  (re-exported: options classes use it)
from fewshot_demo.data.labelled import MODALITIES
from fewshot_demo.data.splits import TRACKS
from fewshot_demo.encoders.registry import gives_vectors, input_kinds, modality_of
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.methods.checkpoint_index import find_checkpoint
from fewshot_demo.methods.meta_recipe import MetaRecipe

FAMILIES = ("transfer", "meta", "self-supervised", "baseline")
#: Cost hints, cheapest first: the comparison runs cheap methods first so results show at once.
COSTS = ("instant", "fast", "seconds", "slow")


@dataclass(frozen=True)
class LearnerContext:
    """Where a learner will run.

    Attributes:
        backbone_id: registry id of the backbone or encoder that produced the inputs.
        feature_dim: size of one feature vector (784 for ``pixels28``).
        device: where tensors live.
    """

    backbone_id: str = ""
    feature_dim: int = 0
    device: torch.device = torch.device("cpu")


#: ``build(context, options)``: a fresh, unfitted learner.
Builder = Callable[[LearnerContext, Any], FewShotLearner]


@dataclass(frozen=True)
class MethodSpec:
    """Everything the app, the bench and the training command know about one method.

    Attributes:
        key: the method name used everywhere (CLI flags, saved classifiers, results).
        label: short display name ("Linear probe"); the README tables use it.
        description: one line with the paper it implements.
        family: "transfer" (adapts a pretrained representation on the support set), "meta" (its
            representation or adaptation rule was meta-learned on episodes), "self-supervised" (its
            representation was pretrained on unlabelled images, no episodes and no labels) or
            "baseline" (a meta-learner's no-meta-training control, shown where its checkpoint exists).
        build: ``build(context, options)`` returns a fresh, unfitted learner; ``options`` is an
            instance of the options class for the context's modality (or None). A mapping
            modality -> builder when the learner differs by modality (fine-tuning).
        modalities: "image" and/or "text".
        input_kinds: modality -> what the learner consumes ("features" unless given): the
            backbone's or encoder's ``prepare(kind, items)`` makes it.
        options: the options dataclass (fields with defaults and ``bounded`` limits), or a
            mapping modality -> options dataclass when the modalities differ; None: no options.
        transductive: predictions use the whole query batch (fair only when a batch is scored together).
        cost: "instant", "fast", "seconds" or "slow" per episode on a CPU.
        checkpoint: "none", "required" (meta-learned or self-supervised: runs only where a checkpoint
            exists for the encoder) or "optional" (meta-trained where a checkpoint exists, plain
            transfer elsewhere).
        baseline_of: for a "baseline": the trained (meta-learned or self-supervised) method it
            controls; listed only where that method's checkpoint exists.
        recipe: the training side of a meta-learned or self-supervised method (``MetaRecipe``), or None.
        savable: its fitted state can be stored in a saved classifier.
    """

    key: str
    label: str
    description: str
    family: str
    build: "Builder | Mapping[str, Builder]" = field(repr=False)
    modalities: tuple[str, ...] = MODALITIES
    input_kinds: Mapping[str, str] = field(default_factory=dict)
    options: type | Mapping[str, type] | None = None
    transductive: bool = False
    cost: str = "fast"
    checkpoint: str = "none"
    baseline_of: str | None = None
    recipe: "MetaRecipe | None" = field(default=None, repr=False)
    savable: bool = True

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.key}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.cost not in COSTS:
            raise ValueError(f"{self.key}: cost must be one of {COSTS}, got {self.cost!r}")
        if self.checkpoint not in ("none", "required", "optional"):
            raise ValueError(f"{self.key}: checkpoint must be none, required or optional")
        if not set(self.modalities) <= set(MODALITIES) or not self.modalities:
            raise ValueError(f"{self.key}: modalities must be a subset of {MODALITIES}")
        if (self.family == "baseline") != (self.baseline_of is not None):
            raise ValueError(f"{self.key}: a baseline names the meta method it controls, and only a baseline does")

    # ---- what it consumes and where it runs -------------------------------------------------
    def input_kind(self, modality: str) -> str:
        """What the learner consumes on this modality: "features" or a kind ``prepare`` makes."""
        return self.input_kinds.get(modality, "features")

    def builder(self, modality: str) -> Builder:
        """The learner factory for a modality."""
        return self.build[modality] if isinstance(self.build, Mapping) else self.build

    def options_class(self, modality: str) -> type | None:
        if isinstance(self.options, Mapping):
            return self.options.get(modality)
        return self.options

    def family_for(self, encoder_id: str) -> str:
        """The family on this encoder: an "optional" checkpoint method is transfer where it has none."""
        if self.checkpoint == "optional" and find_checkpoint(self.key, encoder_id) is None:
            return "transfer"
        return self.family

    def unavailable_reason(self, modality: str, encoder_id: str | None = None) -> str | None:
        """Why this method cannot run on a modality (and encoder), or None when it can."""
        try:
            self.check_applicable(modality, encoder_id)
        except MethodNotApplicableError as error:
            return str(error)
        return None

    def check_applicable(self, modality: str, encoder_id: str | None = None) -> None:
        """Raise ``MethodNotApplicableError`` (or a subclass) saying why the method cannot run here."""
        if modality not in self.modalities:
            raise MethodNotApplicableError(
                f"{self.key} works on {' and '.join(self.modalities)} data, not {modality}"
            )
        if encoder_id is None:
            return
        kind = self.input_kind(modality)
        if kind not in input_kinds(encoder_id):
            raise InputKindUnsupportedError(
                f"{self.key} consumes {kind!r} inputs, which {encoder_id!r} cannot prepare; "
                f"use the bundled efficientnet_lite0 backbone, or a method on frozen features such as linear"
            )
        if kind == "features" and self.family_for(encoder_id) == "transfer" and not gives_vectors(encoder_id):
            raise InputKindUnsupportedError(
                f"{self.key} reads feature vectors; {encoder_id!r} gives raw 28x28 pixels, which only the "
                "meta-learned Conv-4 networks read. Use a pretrained backbone such as efficientnet_lite0"
            )
        if self.checkpoint == "required" and find_checkpoint(self.key, encoder_id) is None:
            if self.family == "self-supervised":
                raise CheckpointMissingError(
                    f"no pretrained {self.key!r} checkpoint for {encoder_id!r}: {self.key} pretrains the Conv-4 of "
                    f"the pixels28 track (`python -m fewshot_demo.train --method {self.key} --backbone pixels28`); "
                    "use it with the pixels28 backbone, or use protonet or linear"
                )
            raise CheckpointMissingError(
                f"no meta-trained {self.key!r} checkpoint for {encoder_id!r}; train one with "
                f"`python -m fewshot_demo.train --method {self.key} --backbone {encoder_id}` "
                f"(checkpoints ship for {', '.join(TRACKS)}), or use protonet or linear"
            )
        if self.baseline_of is not None and find_checkpoint(self.baseline_of, encoder_id) is None:
            raise CheckpointMissingError(
                f"{self.key} is the no-meta-training control of {self.baseline_of}, which has no checkpoint "
                f"for {encoder_id!r}; there it would be the same as {self.baseline_of} itself"
            )

    # ---- options ------------------------------------------------------------------------------
    def make_options(self, modality: str, **values: Any) -> Any:
        """The options instance for a modality, with ``values`` checked against their bounds.

        Raises:
            UserInputError: for an unknown option or a value outside its bounds, saying which.
        """
        cls = self.options_class(modality)
        if cls is None:
            if values:
                raise UserInputError(f"{self.key} takes no options, got {', '.join(sorted(values))}")
            return None
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserInputError(
                f"unknown {self.key} option(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
            )
        for name, value in values.items():
            _check_bounds(self.key, name, value, known[name].metadata)
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise UserInputError(f"{self.key}: {error}") from None

    def option_fields(self, modality: str) -> list[dataclasses.Field]:
        """The options' fields (name, default, ``metadata`` with min/max/label/choices), for forms."""
        cls = self.options_class(modality)
        return list(dataclasses.fields(cls)) if cls is not None else []


def _check_bounds(method: str, name: str, value: Any, metadata: Mapping[str, Any]) -> None:
    if value is None:
        return
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise UserInputError(f"{method} option {name}={value!r} is not one of {', '.join(map(str, choices))}")
    low, high = metadata.get("min"), metadata.get("max")
    if low is None and high is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserInputError(f"{method} option {name} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise UserInputError(f"{method} option {name}={value} is outside [{low}, {high}]; choose a value in that range")


# ------------------------------------------------------------------------------------ the registry
_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method. Keys are unique: registering a key twice is an error, never a silent override."""
    if spec.key in _REGISTRY:
        raise ValueError(f"method {spec.key!r} is registered twice")
    _REGISTRY[spec.key] = spec
    return spec


def all_methods() -> list[MethodSpec]:
    """Every registered method, in registration order."""
    return list(_REGISTRY.values())


def get_method(key: str) -> MethodSpec:
    """The spec of a method.

    Raises:
        UserInputError: for an unknown key, listing the known ones.
    """
    if key not in _REGISTRY:
        raise UserInputError(f"unknown method {key!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def meta_trained_methods() -> list[str]:
    """The methods that have a training recipe (and so checkpoints), in registry order: the
    meta-learners and the self-supervised methods."""
    return [spec.key for spec in _REGISTRY.values() if spec.recipe is not None]


def recipe_of(method: str) -> "MetaRecipe":
    """The ``MetaRecipe`` of a meta-trained method.

    Raises:
        UserInputError: for a method without one, listing those that have one.
    """
    spec = _REGISTRY.get(method)
    if spec is None or spec.recipe is None:
        raise UserInputError(f"{method!r} is not meta-trained; choose from {', '.join(meta_trained_methods())}")
    return spec.recipe


def available_methods() -> dict[str, str]:
    """{method key: one-line description}, for help texts and error messages."""
    return {spec.key: spec.description for spec in _REGISTRY.values()}


def methods_for(
    modality: str | None = None,
    encoder_id: str | None = None,
    families: tuple[str, ...] = FAMILIES,
    transductive: bool = True,
) -> list[MethodSpec]:
    """The methods that run on a modality (and encoder), of the given families.

    Args:
        modality: "image" or "text"; None: any.
        encoder_id: also require what the encoder provides (input kinds, checkpoints).
        families: keep only these families.
        transductive: include transductive methods.
    """
    found = []
    for spec in _REGISTRY.values():
        if spec.family not in families or (spec.transductive and not transductive):
            continue
        if modality is not None and spec.unavailable_reason(modality, encoder_id) is not None:
            continue
        found.append(spec)
    return found


def cheapest_first(keys: list[str] | tuple[str, ...]) -> list[str]:
    """Method keys sorted by cost hint, registration order within a cost."""
    order = list(_REGISTRY)
    return sorted(keys, key=lambda key: (COSTS.index(get_method(key).cost), order.index(key)))


def make_learner(key: str, context: LearnerContext | None = None, **options: Any) -> FewShotLearner:
    """Build a fresh, unfitted learner by method key.

    ``options`` are checked against the method's options class for the context's modality
    (bounds included); unknown or out-of-range options raise ``UserInputError``.

    Raises:
        UserInputError: unknown method or bad options.
        MethodNotApplicableError: the method cannot run on this backbone or encoder.
    """
    spec = get_method(key)
    context = context or LearnerContext()
    modality = modality_of(context.backbone_id)
    if modality is not None:
        spec.check_applicable(modality, context.backbone_id)
    modality = modality or spec.modalities[0]
    return spec.builder(modality)(context, spec.make_options(modality, **options))


def options_dict(options: Any) -> dict[str, Any]:
    """An options instance as a JSON-able dict ({} for None)."""
    return dataclasses.asdict(options) if options is not None else {}
