"""A backbone's last feature map, before pooling: what the "where it looked" heat maps read.

For a network whose features are the average of its last feature map (timm's EfficientNet and
ResNet heads: ``forward_head`` is a global average pool), running ``forward_features`` and pooling
gives the same features as the network itself, and the map comes with them from the same pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FeatureMapNetwork(nn.Module):
    """``network.forward_features``: (n, 3, h, w) images in, (n, feature_dim, h', w') maps out."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: Tensor) -> Tensor:
        return self.network.forward_features(images)


@torch.inference_mode()
def pools_its_feature_map(network: nn.Module, probe: Tensor) -> bool:
    """True when ``network(probe)`` is the spatial average of ``network.forward_features(probe)``
    (False for networks without one, or whose features are tokens or pooled otherwise, e.g. a ViT)."""
    if not hasattr(network, "forward_features"):
        return False
    maps = network.forward_features(probe)
    pooled = network(probe)
    return maps.ndim == 4 and pooled.ndim == 2 and pooled.shape == maps.shape[:2] and bool(
        torch.allclose(maps.mean(dim=(2, 3)), pooled, rtol=1e-4, atol=1e-5))
