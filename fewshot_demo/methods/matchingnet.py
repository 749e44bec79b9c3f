"""Matching Networks: a query's label distribution is attention over the labelled support items."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.features import FeatureNormalizer
from fewshot_demo.methods.meta_recipe import MetaRecipe
from fewshot_demo.methods.networks import (
    EmbeddingNetwork,
    check_inputs,
    one_thread,
    prepare_episode,
)


def matching_log_probs(
    support_embeddings: Tensor, support_labels: Tensor, query_embeddings: Tensor, n_way: int, log_temperature: Tensor
) -> Tensor:
    """Matching Networks' classifier: cosine attention over the support set.

    p(y | x) = sum_i a(x, x_i) [y_i = y], with a = softmax over i of temperature * cos(f(x), f(x_i)).

    Args:
        support_embeddings: (n_support, embed_dim).
        support_labels: (n_support,) labels in 0..n_way-1.
        query_embeddings: (n_query, embed_dim).
        n_way: number of classes.
        log_temperature: scalar, the learned log of the cosine scale.

    Returns:
        (n_query, n_way) log-probabilities.
    """
    similarity = F.normalize(query_embeddings, dim=-1) @ F.normalize(support_embeddings, dim=-1).T
    attention = (log_temperature.exp() * similarity).softmax(dim=1)  # (n_query, n_support)
    one_hot = F.one_hot(support_labels, n_way).to(attention.dtype)  # (n_support, n_way)
    return (attention @ one_hot).clamp_min(1e-8).log()  # (n_query, n_way)


class MatchingNetwork(FewShotLearner):
    """Matching Networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, NeurIPS 2016).

    The embedding network is meta-trained episodically so that cosine attention over the support
    set labels the queries. Without the paper's optional full-context embeddings (the LSTMs that
    condition embeddings on the whole support set): they matter little with a good embedding and
    would tie the model to the order of the support items. Works for any n_way.

    Args:
        network: the meta-trained embedding network; it is not modified.
        log_temperature: scalar tensor, the meta-learned log of the cosine scale.
    """

    def __init__(self, network: EmbeddingNetwork, log_temperature: Tensor | None = None) -> None:
        super().__init__()
        self.network = network.eval()
        device = next(network.parameters()).device
        self.log_temperature = (
            torch.tensor(2.3, device=device) if log_temperature is None else log_temperature.detach().to(device)
        )
        self.support_embeddings: Tensor | None = None  # (n_support, embed_dim)
        self.support_labels: Tensor | None = None  # (n_support,)
        self._normalizer: FeatureNormalizer | None = None

    @torch.no_grad()
    def fit(self, support: Tensor, support_labels: Tensor) -> "MatchingNetwork":
        self.n_way = check_support(support, support_labels)
        check_inputs(self.network, support, "support inputs")
        device = self.log_temperature.device
        with one_thread(device.type == "cpu"):
            support, _, self._normalizer = prepare_episode(self.network, support.to(device))
            self.support_embeddings = self.network(support)
        self.support_labels = support_labels.to(device)
        return self

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        self._require_fitted()
        check_inputs(self.network, query, "query inputs")
        with one_thread(self.log_temperature.device.type == "cpu"):
            query = query.to(self.log_temperature.device).float()
            if self._normalizer is not None:
                query = self._normalizer(query)
            log_probs = matching_log_probs(
                self.support_embeddings, self.support_labels, self.network(query), self.n_way, self.log_temperature
            )
            return log_probs.exp()  # (n_query, n_way)

    def state_dict(self) -> dict[str, Tensor]:
        if self.support_embeddings is None:
            raise RuntimeError("fit the learner before saving it")
        state = {"support_embeddings": self.support_embeddings, "support_labels": self.support_labels}
        if self._normalizer is not None:
            state.update({f"normalizer.{k}": v for k, v in self._normalizer.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.support_embeddings = state["support_embeddings"].float()
        self.support_labels = state["support_labels"].long()
        if "normalizer.center" in state:
            self._normalizer = FeatureNormalizer()
            self._normalizer.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("normalizer.")})
        self.n_way = int(self.support_labels.max()) + 1

    def config(self) -> dict[str, Any]:
        return {"architecture": self.network.architecture(), "log_temperature": float(self.log_temperature)}


TEMPERATURE_KEY = "method.log_temperature"


class MatchingNetRecipe(MetaRecipe):
    """Meta-training of Matching Networks: the query log-likelihood under cosine attention, with the
    attention's temperature meta-learned beside the network."""

    key = "matchingnet"

    def init_extras(self, network, settings):
        device = next(network.parameters()).device
        return {TEMPERATURE_KEY: torch.tensor(2.3, device=device, requires_grad=True)}

    def task_loss(self, network, extras, settings, support, support_labels, query, query_labels):
        embeddings = network(torch.cat([support, query]))  # (n_support + n_query, embed_dim)
        n_way = int(support_labels.max()) + 1
        log_probs = matching_log_probs(embeddings[: len(support)], support_labels, embeddings[len(support) :], n_way,
                                       extras[TEMPERATURE_KEY])  # (n_query, n_way)
        accuracy = (log_probs.argmax(dim=1) == query_labels).float().mean().detach()
        return F.nll_loss(log_probs, query_labels), accuracy

    def learner(self, network, extras, settings, options=None):
        return MatchingNetwork(network, extras[TEMPERATURE_KEY])

    def extra_shapes(self, checkpoint_config, network):
        return {TEMPERATURE_KEY: ()}


MATCHINGNET_RECIPE = MatchingNetRecipe()
