"""Reptile: move the initialisation towards the weights that plain SGD reaches on each task."""

from __future__ import annotations

import torch
from torch import Tensor

from fewshot_demo.methods.maml import (
    MAML,
    MAMLConfig,
    MAMLRecipe,
    Params,
    adapt,
    initial_inner_lrs,
    network_params,
    zero_head,
)
from fewshot_demo.methods.networks import EmbeddingNetwork


def reptile_task_delta(
    network: EmbeddingNetwork, inputs: Tensor, labels: Tensor, config: MAMLConfig
) -> Params:
    """One Reptile inner loop: return phi - theta for the network's parameters.

    Takes ``config.inner_steps`` plain SGD steps (step size ``config.inner_lr``) on all of the
    task's labelled items, from the current network and a zero head, with no second-order graph.
    The outer update in ``fewshot_demo.train`` is theta <- theta + epsilon * mean over tasks of
    (phi - theta).

    Args:
        network: the embedding network being meta-trained.
        inputs: (n, *input_shape) the task's support and query items, already normalised.
        labels: (n,) labels in 0..n_way-1.

    Returns:
        {``network.<name>``: (phi - theta) tensor} for every network parameter, detached.
    """
    n_way = int(labels.max()) + 1
    theta = {name: value.detach().requires_grad_() for name, value in network_params(network).items()}
    params = {**theta, **zero_head(n_way, network.embed_dim, inputs)}
    lrs = initial_inner_lrs(network, config.inner_lr)
    with torch.enable_grad():
        adapted, _ = adapt(network, params, lrs, inputs, labels, config.inner_steps, create_graph=False)
    return {name: (adapted[name] - theta[name]).detach() for name in theta}


class Reptile(MAML):
    """Reptile (Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", 2018).

    Meta-training differs from MAML (no gradient through the inner loop; the initialisation is
    pulled towards each task's adapted weights), but a task is adapted the same way: a zero head on
    the meta-learned network, then ``inner_steps`` SGD steps on the support set. So this learner is
    MAML's, with Reptile's checkpoint and a single fixed step size; ``history`` and ``on_step``
    work as for ``MAML``.
    """


class ReptileRecipe(MAMLRecipe):
    """Meta-training of Reptile: no loss is back-propagated; the loop moves the initialisation by
    the mean of each task's ``phi - theta`` (one fixed step size, never meta-learned)."""

    outer_update = "delta"

    def __init__(self) -> None:
        super().__init__("reptile", Reptile, first_order=True, learns_step_sizes=False)

    def task_delta(self, network, extras, settings, inputs, labels):
        return reptile_task_delta(network, inputs, labels, self.maml_config(settings))


REPTILE_RECIPE = ReptileRecipe()
