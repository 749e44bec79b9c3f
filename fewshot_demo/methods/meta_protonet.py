"""ProtoNet with a meta-trained embedding: prototypes in a space learned from episodes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.features import FeatureNormalizer, class_means
from fewshot_demo.methods.meta_recipe import MetaRecipe
from fewshot_demo.methods.networks import (
    EmbeddingNetwork,
    check_inputs,
    one_thread,
    prepare_episode,
)


def prototype_logits(support_embeddings: Tensor, support_labels: Tensor, query_embeddings: Tensor, n_way: int) -> Tensor:
    """Negative squared Euclidean distances from queries to class prototypes.

    Args:
        support_embeddings: (n_support, embed_dim).
        support_labels: (n_support,) labels in 0..n_way-1.
        query_embeddings: (n_query, embed_dim).

    Returns:
        (n_query, n_way) logits.
    """
    prototypes = class_means(support_embeddings, support_labels, n_way)  # (n_way, embed_dim)
    return -torch.cdist(query_embeddings, prototypes).pow(2)  # (n_query, n_way)


class MetaPrototypicalNetwork(FewShotLearner):
    """Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017), meta-trained.

    Each class is the mean embedding of its support items; a query's logits are its negative squared
    distances to them. The embedding network is trained episodically: Conv-4 from scratch on pixels,
    or, following P>M>F (Hu, Li, Stuhmer, Kim & Hospedales, CVPR 2022), a projection meta-trained on
    top of the frozen pretrained backbone. Works for any n_way.

    Args:
        network: the embedding network (meta-trained, or freshly initialised for the untrained
            baseline); it is not modified.
    """

    def __init__(self, network: EmbeddingNetwork) -> None:
        super().__init__()
        self.network = network.eval()
        self.prototypes: Tensor | None = None  # (n_way, embed_dim)
        self._normalizer: FeatureNormalizer | None = None

    @torch.no_grad()
    def fit(self, support: Tensor, support_labels: Tensor) -> "MetaPrototypicalNetwork":
        self.n_way = check_support(support, support_labels)
        check_inputs(self.network, support, "support inputs")
        device = next(self.network.parameters()).device
        with one_thread(device.type == "cpu"):
            support, _, self._normalizer = prepare_episode(self.network, support.to(device))
            self.prototypes = class_means(self.network(support), support_labels.to(device), self.n_way)
        return self

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        self._require_fitted()
        check_inputs(self.network, query, "query inputs")
        with one_thread(self.prototypes.device.type == "cpu"):
            query = query.to(self.prototypes.device).float()
            if self._normalizer is not None:
                query = self._normalizer(query)
            logits = -torch.cdist(self.network(query), self.prototypes).pow(2)  # (n_query, n_way)
            return logits.softmax(dim=1)

    def state_dict(self) -> dict[str, Tensor]:
        if self.prototypes is None:
            raise RuntimeError("fit the learner before saving it")
        state = {"prototypes": self.prototypes}
        if self._normalizer is not None:
            state.update({f"normalizer.{k}": v for k, v in self._normalizer.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.prototypes = state["prototypes"].float()
        if "normalizer.center" in state:
            self._normalizer = FeatureNormalizer()
            self._normalizer.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("normalizer.")})
        self.n_way = self.prototypes.shape[0]

    def config(self) -> dict[str, Any]:
        return {"architecture": self.network.architecture()}


class ProtoNetRecipe(MetaRecipe):
    """Meta-training of Prototypical Networks: query cross-entropy over negative squared distances
    to the support prototypes in the learned embedding."""

    key = "protonet"

    def task_loss(self, network, extras, settings, support, support_labels, query, query_labels):
        embeddings = network(torch.cat([support, query]))  # (n_support + n_query, embed_dim)
        n_way = int(support_labels.max()) + 1
        logits = prototype_logits(embeddings[: len(support)], support_labels, embeddings[len(support) :], n_way)
        accuracy = (logits.argmax(dim=1) == query_labels).float().mean().detach()
        return F.cross_entropy(logits, query_labels), accuracy

    def learner(self, network, extras, settings, options=None):
        return MetaPrototypicalNetwork(network)


PROTONET_RECIPE = ProtoNetRecipe()
