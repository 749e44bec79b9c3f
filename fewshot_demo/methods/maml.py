"""MAML: a meta-learned initialisation, adapted to each task by a few gradient steps.

The inner loop is a small explicit function over a dict of parameters (``torch.func.functional_call``
plus ``torch.autograd.grad``), so the same code serves meta-training (second order, or first order)
and the user's task at test time. The training loop itself lives in ``fewshot_demo.train``.

The classifier head is zero-initialised for every task (the "zero trick" of MAML++, Antoniou et al.
2019, and of UNICORN-MAML, Ye & Chao 2022) rather than meta-learned: a meta-learned head would fix
n_way and tie each output unit to an arbitrary label order, whereas zero rows work for any number
of classes (the UI allows 2..20) and treat all labels alike. The first inner step from zero rows
moves each row towards its class's mean embedding (minus the overall mean), which is a prototype
classifier (the Proto-MAML view of Triantafillou et al. 2020); later steps refine both the head and
the meta-learned network beneath it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.options import bounded
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.features import FeatureNormalizer
from fewshot_demo.methods.meta_recipe import MetaRecipe, TrainSettings
from fewshot_demo.methods.networks import (
    EmbeddingNetwork,
    check_inputs,
    one_thread,
    prepare_episode,
)

Params = dict[str, Tensor]
StepCallback = Callable[[dict[str, float]], None]

NETWORK_PREFIX = "network."
HEAD_KEYS = ("head.weight", "head.bias")


@dataclass(frozen=True)
class MAMLConfig:
    """How a task is adapted.

    Attributes:
        inner_steps: gradient steps on the support set.
        inner_lr: step size of each inner step (the starting value when ``learn_inner_lr``).
        first_order: drop second derivatives in meta-training (FOMAML, Finn et al. 2017 sec. 5.2).
            Adaptation at test time is the same either way.
        learn_inner_lr: meta-learn one step size per parameter tensor (Meta-SGD, Li et al. 2017,
            with per-tensor rather than per-element rates as in MAML++'s LSLR).
    """

    inner_steps: int = 5
    inner_lr: float = 0.5
    first_order: bool = False
    learn_inner_lr: bool = True

    def __post_init__(self) -> None:
        if self.inner_steps < 0:
            raise UserInputError(f"inner_steps must be 0 or more, got {self.inner_steps}")
        if not self.inner_lr > 0:
            raise UserInputError(f"inner_lr must be positive, got {self.inner_lr}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AdaptationOptions:
    """What a user may change about test-time adaptation (MAML, FOMAML, Reptile, and the
    from-scratch control).

    Attributes:
        inner_steps: gradient steps on the support set; None: as many as in meta-training.
        inner_lr: one step size for every tensor; None: the meta-learned step sizes.
    """

    inner_steps: int | None = bounded(None, 0, 100, "Adaptation steps on the support set")
    inner_lr: float | None = bounded(None, 1e-4, 10.0, "Step size (unset: the meta-learned ones)")


def network_params(network: EmbeddingNetwork) -> Params:
    """Return the network's parameters under ``network.<name>`` keys (the meta-parameters)."""
    return {NETWORK_PREFIX + name: parameter for name, parameter in network.named_parameters()}


def zero_head(n_way: int, embed_dim: int, like: Tensor) -> Params:
    """Return a zero classifier head: weight (n_way, embed_dim) and bias (n_way,)."""
    return {
        "head.weight": torch.zeros(n_way, embed_dim, dtype=like.dtype, device=like.device, requires_grad=True),
        "head.bias": torch.zeros(n_way, dtype=like.dtype, device=like.device, requires_grad=True),
    }


def initial_inner_lrs(network: EmbeddingNetwork, inner_lr: float) -> Params:
    """Return one step size per adapted tensor (network parameters and head), all ``inner_lr``."""
    names = [NETWORK_PREFIX + name for name, _ in network.named_parameters()] + list(HEAD_KEYS)
    device = next(network.parameters()).device
    return {name: torch.tensor(float(inner_lr), device=device) for name in names}


def task_logits(network: EmbeddingNetwork, params: Params, inputs: Tensor) -> Tensor:
    """Return (n, n_way) logits of inputs under the given network and head parameters."""
    body = {name[len(NETWORK_PREFIX) :]: value for name, value in params.items() if name.startswith(NETWORK_PREFIX)}
    embeddings = functional_call(network, body, (inputs,))  # (n, embed_dim)
    return embeddings @ params["head.weight"].T + params["head.bias"]  # (n, n_way)


def adapt(
    network: EmbeddingNetwork,
    params: Params,
    inner_lrs: Params,
    support: Tensor,
    support_labels: Tensor,
    steps: int,
    create_graph: bool,
    on_step: StepCallback | None = None,
) -> tuple[Params, list[dict[str, float]]]:
    """Take ``steps`` gradient steps on the support loss: theta' = theta - lr * grad.

    Args:
        network: the embedding network (its own parameters are ignored; ``params`` are used).
        params: network parameters (``network.*``) and head (``head.weight``, ``head.bias``).
        inner_lrs: a step size per key of ``params``; keys without one are not adapted.
        support: (n_support, *input_shape) inputs.
        support_labels: (n_support,) labels in 0..n_way-1.
        steps: number of inner steps.
        create_graph: keep the graph of the steps so a later loss can be differentiated through
            them (second-order MAML). False gives first-order updates.
        on_step: if given, the loss and accuracy at every step are measured and passed to it
            (step 0 is before adaptation), and also returned.

    Returns:
        (adapted params, history): history is a list of {step, support_loss, support_accuracy}
        when ``on_step`` is given or ``create_graph`` is False, else empty (meta-training skips it).
    """
    record = on_step is not None or not create_graph
    history: list[dict[str, float]] = []
    names = [name for name in params if name in inner_lrs]

    def log(step: int, logits: Tensor) -> None:
        loss = F.cross_entropy(logits, support_labels)
        entry = {
            "step": step,
            "support_loss": float(loss.detach()),
            "support_accuracy": float((logits.argmax(dim=1) == support_labels).float().mean()),
        }
        history.append(entry)
        if on_step is not None:
            on_step(entry)

    for step in range(steps):
        logits = task_logits(network, params, support)  # (n_support, n_way)
        if record:
            log(step, logits.detach())
        loss = F.cross_entropy(logits, support_labels)
        grads = torch.autograd.grad(loss, [params[name] for name in names], create_graph=create_graph)
        params = dict(params)
        for name, grad in zip(names, grads):
            params[name] = params[name] - inner_lrs[name].clamp_min(0) * grad
    if record:
        with torch.no_grad():
            log(steps, task_logits(network, params, support))
    return params, history


def maml_query_loss(
    network: EmbeddingNetwork,
    inner_lrs: Params,
    support: Tensor,
    support_labels: Tensor,
    query: Tensor,
    query_labels: Tensor,
    config: MAMLConfig,
) -> tuple[Tensor, Tensor]:
    """The MAML outer objective for one task: adapt on the support, score the query.

    Gradients of the returned loss reach the network's parameters (through the inner steps, with
    second derivatives unless ``config.first_order``) and the inner step sizes.

    Args:
        support, query: (n, *input_shape) inputs of one task, already normalised.
        support_labels, query_labels: labels in 0..n_way-1.

    Returns:
        (loss, accuracy): scalar query cross-entropy and query accuracy (detached).
    """
    n_way = int(support_labels.max()) + 1
    params = {**network_params(network), **zero_head(n_way, network.embed_dim, support)}
    adapted, _ = adapt(
        network, params, inner_lrs, support, support_labels, config.inner_steps, create_graph=not config.first_order
    )
    logits = task_logits(network, adapted, query)  # (n_query, n_way)
    loss = F.cross_entropy(logits, query_labels)
    accuracy = (logits.argmax(dim=1) == query_labels).float().mean().detach()
    return loss, accuracy


class MAML(FewShotLearner):
    """Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, ICML 2017).

    ``fit`` starts from the meta-learned network and a zero head and takes ``inner_steps``
    gradient steps on the support loss; ``predict_proba`` scores queries with the adapted
    parameters. After ``fit``, ``history`` holds one entry per inner step, for the UI's live view::

        learner = make_learner("maml", context)  # or MAML(network, config, inner_steps=10)
        learner.fit(support, labels)
        learner.history  # [{"step": 0, "support_loss": 1.61, "support_accuracy": 0.2}, ...]

    Step 0 is before any adaptation; the last entry is after the last step.

    Args:
        network: the (meta-trained) embedding network; it is not modified.
        config: the settings it was meta-trained with.
        inner_lrs: meta-learned step size per tensor (``network.*`` and ``head.*`` keys), or None
            to use ``config.inner_lr`` everywhere.
        inner_steps: steps to take at fit time; None uses ``config.inner_steps``.
        inner_lr: one step size for every tensor, overriding the meta-learned ones; None keeps them.
        on_step: called with each history entry as it is measured, e.g. to update a plot.
    """

    def __init__(
        self,
        network: EmbeddingNetwork,
        config: MAMLConfig | None = None,
        inner_lrs: Params | None = None,
        inner_steps: int | None = None,
        inner_lr: float | None = None,
        on_step: StepCallback | None = None,
    ) -> None:
        super().__init__()
        self.network = network.eval()
        self.maml_config = config or MAMLConfig()
        self.inner_steps = self.maml_config.inner_steps if inner_steps is None else int(inner_steps)
        if self.inner_steps < 0 or self.inner_steps > 1000:
            raise UserInputError(f"inner_steps must be between 0 and 1000, got {self.inner_steps}")
        if inner_lr is not None and not inner_lr > 0:
            raise UserInputError(f"inner_lr must be positive, got {inner_lr}; or leave it unset for the learned step sizes")
        base = initial_inner_lrs(network, self.maml_config.inner_lr)
        if inner_lr is not None:
            self.inner_lrs = initial_inner_lrs(network, inner_lr)
        else:
            self.inner_lrs = {name: (inner_lrs or {}).get(name, lr).detach() for name, lr in base.items()}
        self.on_step = on_step
        self.history: list[dict[str, float]] = []
        self.adapted: Params | None = None
        self._normalizer = None

    def fit(self, support: Tensor, support_labels: Tensor) -> "MAML":
        self.n_way = check_support(support, support_labels)
        check_inputs(self.network, support, "support inputs")
        device = next(self.network.parameters()).device
        with one_thread(device.type == "cpu"):
            support, _, self._normalizer = prepare_episode(self.network, support.to(device))
            support_labels = support_labels.to(device)
            params = {
                **{name: value.detach().requires_grad_() for name, value in network_params(self.network).items()},
                **zero_head(self.n_way, self.network.embed_dim, support),
            }
            with torch.enable_grad():
                adapted, self.history = adapt(
                    self.network,
                    params,
                    self.inner_lrs,
                    support,
                    support_labels,
                    self.inner_steps,
                    create_graph=False,
                    on_step=self.on_step,
                )
        self.adapted = {name: value.detach() for name, value in adapted.items()}
        return self

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        self._require_fitted()
        check_inputs(self.network, query, "query inputs")
        device = self.adapted["head.bias"].device
        with one_thread(device.type == "cpu"):
            query = query.to(device).float()
            if self._normalizer is not None:
                query = self._normalizer(query)
            return task_logits(self.network, self.adapted, query).softmax(dim=1)  # (n_query, n_way)

    def step_sizes(self) -> dict[str, float]:
        """The step size of each adapted tensor (meta-learned unless ``inner_lr`` was given).

        The head's (``head.weight``) is the natural default for a UI step-size control. Learned
        rates below zero act as zero (the tensor is not adapted): the shipped Conv-4 MAML learned
        to leave its first and last convolutions fixed, as ANIL (Raghu et al. 2020) would.
        """
        return {name: max(0.0, float(lr)) for name, lr in self.inner_lrs.items()}

    def state_dict(self) -> dict[str, Tensor]:
        """The adapted parameters (network and head) and the support normalisation."""
        if self.adapted is None:
            raise RuntimeError("fit the learner before saving it")
        state = {f"adapted.{name}": value for name, value in self.adapted.items()}
        if self._normalizer is not None:
            state.update({f"normalizer.{k}": v for k, v in self._normalizer.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.adapted = {name[len("adapted.") :]: value.float() for name, value in state.items() if name.startswith("adapted.")}
        if any(name.startswith("normalizer.") for name in state):
            self._normalizer = FeatureNormalizer()
            self._normalizer.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("normalizer.")})
        self.n_way = self.adapted["head.bias"].shape[0]

    def config(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            "architecture": self.network.architecture(),
            "maml": self.maml_config.to_dict(),
            "inner_steps": self.inner_steps,
        }


class FOMAML(MAML):
    """First-order MAML (Finn, Abbeel & Levine, ICML 2017, section 5.2).

    Meta-trained without second derivatives (the inner steps' gradients are treated as constants),
    which is cheaper and often as good. Adaptation at test time is exactly MAML's.
    """


INNER_LR_PREFIX = "inner_lr."


class MAMLRecipe(MetaRecipe):
    """Meta-training of MAML (second order) or FOMAML (first order): the query loss after adapting
    on the support set, back-propagated through the inner steps; optionally meta-learned step sizes.

    Args:
        key: the method key.
        learner_class: the learner users run (``MAML``, ``FOMAML``; Reptile's recipe subclasses this).
        first_order: drop second derivatives in the outer gradient.
        learns_step_sizes: whether ``settings.learn_inner_lr`` applies to this method.
    """

    def __init__(self, key: str, learner_class: type["MAML"], first_order: bool, learns_step_sizes: bool = True) -> None:
        self.key = key
        self.learner_class = learner_class
        self.first_order = first_order
        self.learns_step_sizes = learns_step_sizes

    def maml_config(self, settings: TrainSettings) -> MAMLConfig:
        return MAMLConfig(
            inner_steps=settings.inner_steps,
            inner_lr=settings.inner_lr,
            first_order=self.first_order,
            learn_inner_lr=settings.learn_inner_lr and self.learns_step_sizes,
        )

    def init_extras(self, network: EmbeddingNetwork, settings: TrainSettings) -> dict[str, Tensor]:
        if not self.maml_config(settings).learn_inner_lr:
            return {}
        return {INNER_LR_PREFIX + name: lr.clone().requires_grad_()
                for name, lr in initial_inner_lrs(network, settings.inner_lr).items()}

    @staticmethod
    def _step_sizes(extras: dict[str, Tensor]) -> Params:
        return {name[len(INNER_LR_PREFIX) :]: value for name, value in extras.items() if name.startswith(INNER_LR_PREFIX)}

    def task_loss(self, network, extras, settings, support, support_labels, query, query_labels):
        lrs = self._step_sizes(extras) or initial_inner_lrs(network, settings.inner_lr)
        return maml_query_loss(network, lrs, support, support_labels, query, query_labels, self.maml_config(settings))

    def learner(self, network, extras, settings, options: AdaptationOptions | None = None) -> "MAML":
        options = options or AdaptationOptions()
        return self.learner_class(network, self.maml_config(settings), self._step_sizes(extras) or None,
                                  inner_steps=options.inner_steps, inner_lr=options.inner_lr)

    def checkpoint_fields(self, settings: TrainSettings) -> dict[str, Any]:
        return {"maml": self.maml_config(settings).to_dict(), "inner_steps": settings.inner_steps,
                "inner_lr": settings.inner_lr}

    def settings_from(self, checkpoint_config: dict[str, Any]) -> MAMLConfig:
        return MAMLConfig(**checkpoint_config["maml"])

    def extra_shapes(self, checkpoint_config, network):
        if not checkpoint_config.get("maml", {}).get("learn_inner_lr", False):
            return {}
        names = [NETWORK_PREFIX + name for name, _ in network.named_parameters()] + list(HEAD_KEYS)
        return {INNER_LR_PREFIX + name: () for name in names}


MAML_RECIPE = MAMLRecipe("maml", MAML, first_order=False)
FOMAML_RECIPE = MAMLRecipe("fomaml", FOMAML, first_order=True)
