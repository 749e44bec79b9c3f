"""Linear evaluation of a pretrained encoder: logistic regression on its frozen embedding."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.networks import EmbeddingNetwork, check_inputs, one_thread


class EncoderLinearProbe(FewShotLearner):
    """A linear head (``LinearProbe``: normalised features, L2-penalised logistic regression) on the
    embedding of a frozen network.

    How self-supervised encoders are read (the "linear evaluation" of SimCLR, Chen et al. 2020, and
    of the masked autoencoder, He et al. 2022): pretraining without labels shapes the embedding, the
    support's few labels fit only the head. The network is never updated; with random weights the
    same learner is the no-pretraining control.

    Args:
        network: the pretrained (or untrained) embedding network; it is not modified.
    """

    def __init__(self, network: EmbeddingNetwork) -> None:
        super().__init__()
        self.network = network.eval()
        self.head = LinearProbe()

    @torch.no_grad()
    def embed(self, inputs: Tensor) -> Tensor:
        """(n, *input_shape) -> (n, embed_dim) embeddings on the network's device."""
        check_inputs(self.network, inputs)
        device = next(self.network.parameters()).device
        with one_thread(device.type == "cpu"):
            return self.network(inputs.to(device).float())

    def fit(self, support: Tensor, support_labels: Tensor) -> "EncoderLinearProbe":
        self.n_way = check_support(support, support_labels)
        embeddings = self.embed(support)
        self.head.fit(embeddings, support_labels.to(embeddings.device))
        return self

    @torch.no_grad()
    def predict_proba(self, query: Tensor) -> Tensor:
        self._require_fitted()
        return self.head.predict_proba(self.embed(query))

    def state_dict(self) -> dict[str, Tensor]:
        return {f"head.{key}": value for key, value in self.head.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.head.load_state_dict({key.removeprefix("head."): value for key, value in state.items()
                                   if key.startswith("head.")})
        self.n_way = self.head.n_way

    def config(self) -> dict[str, Any]:
        return {"architecture": self.network.architecture(), "head": {"linear": self.head.config()}}
