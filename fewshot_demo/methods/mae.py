"""Masked autoencoder: a Conv-4 pretrained without labels by filling in the hidden three quarters of an image."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_demo.data.views import apply_views, draw_views
from fewshot_demo.methods.encoder_probe import EncoderLinearProbe
from fewshot_demo.methods.meta_recipe import MetaRecipe


def draw_patch_masks(n: int, grid: int, ratio: float, generator: np.random.Generator) -> np.ndarray:
    """(n, grid, grid) booleans, True for a masked patch: exactly round(ratio * grid**2) per image."""
    count = int(round(ratio * grid * grid))
    order = generator.random((n, grid * grid)).argsort(axis=1)
    masks = np.zeros((n, grid * grid), dtype=bool)
    np.put_along_axis(masks, order[:, :count], True, axis=1)
    return masks.reshape(n, grid, grid)


def pixel_mask(patch_masks: Tensor, patch_size: int) -> Tensor:
    """(n, g, g) patch booleans -> (n, 1, g * patch_size, g * patch_size) float pixel mask."""
    return patch_masks.float().repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2).unsqueeze(1)


def normalise_patches(images: Tensor, patch_size: int, eps: float = 1e-6) -> Tensor:
    """Each patch_size x patch_size patch of (n, c, h, w) images shifted to mean 0 and scaled to spread 1.

    MAE's normalised-pixel target (He et al. 2022, "norm_pix_loss"): the decoder is asked for each
    patch's pattern rather than its brightness, which the paper found gives better representations.
    """
    height, width = images.shape[-2:]
    patches = F.unfold(images, kernel_size=patch_size, stride=patch_size)  # (n, c * p * p, patches)
    channels = images.shape[1]
    patches = patches.view(len(images), channels, patch_size * patch_size, -1)
    mean = patches.mean(dim=2, keepdim=True)
    var = patches.var(dim=2, keepdim=True, unbiased=False)
    patches = (patches - mean) / (var + eps).sqrt()
    return F.fold(patches.view(len(images), channels * patch_size * patch_size, -1), (height, width),
                  kernel_size=patch_size, stride=patch_size)


class Conv4Decoder(nn.Module):
    """Decodes a Conv-4 embedding back to a 28x28 image: a linear map to a 7x7 grid, two
    transposed convolutions (7 -> 14 -> 28). Used only in pretraining; light, as MAE's decoder is,
    so that the encoder does the work."""

    def __init__(self, embed_dim: int, channels: int = 16) -> None:
        super().__init__()
        self.channels = channels
        self.expand = nn.Linear(embed_dim, channels * 7 * 7)
        self.up = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1),  # 14x14
            nn.GroupNorm(min(8, channels), channels),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, 1, kernel_size=4, stride=2, padding=1),  # 28x28
        )

    def forward(self, embeddings: Tensor) -> Tensor:
        """(n, embed_dim) -> (n, 1, 28, 28) reconstructed pixels."""
        return self.up(self.expand(embeddings).view(-1, self.channels, 7, 7))


class MaskedAutoencoderRecipe(MetaRecipe):
    """Masked autoencoder (He, Chen, Xie, Li, Dollar & Girshick, CVPR 2022) with a Conv-4 encoder.

    The image is cut into ``patch_size`` x ``patch_size`` patches (4 x 4: a 7 x 7 grid) and
    ``mask_ratio`` of them (75%, as in the paper) are hidden, set to 0 (mid-grey). The Conv-4 encodes
    the masked image; a small decoder (``Conv4Decoder``, dropped after training) reconstructs the
    whole image from the embedding, and the loss is the mean squared error on the hidden pixels only,
    against the pixels themselves or, with ``norm_pix``, each patch normalised by its own mean and
    spread (the paper's better target, ``normalise_patches``).

    Unlike the paper's Vision Transformer, a convolutional encoder cannot drop the masked patches, so
    it sees them as grey squares (SparK and ConvNeXt V2 use sparse convolutions for this); at test time
    it sees whole images. Its frozen embedding is then read by a linear head, like SimCLR's. Views are the
    light ones of ``data.views`` (shifts and crops), so the encoder does not learn exact positions.
    """

    key = "mae"
    outer_update = "batch"
    metric_name = "masked_mse"

    def __init__(self, fill: float = 0.0, decoder_channels: int = 16) -> None:
        self.fill = fill
        self.decoder_channels = decoder_channels

    def init_heads(self, network, settings):
        return Conv4Decoder(network.embed_dim, self.decoder_channels).to(next(network.parameters()).device)

    def batch_loss(self, network, heads, settings, images, generator, world):
        n = len(images)
        grid = images.shape[-1] // settings.patch_size
        views = draw_views(n, settings.view_config(), generator)
        masks = draw_patch_masks(n, grid, settings.mask_ratio, generator)
        mine = world.share(n)
        local = apply_views(images[torch.as_tensor(mine, device=images.device)], views.take(mine))
        hidden = pixel_mask(torch.as_tensor(masks[mine], device=images.device), settings.patch_size)  # (m, 1, h, w)
        if hidden.shape[-2:] != local.shape[-2:]:
            hidden = F.pad(hidden, (0, local.shape[-1] - hidden.shape[-1], 0, local.shape[-2] - hidden.shape[-2]))
        reconstruction = heads(network(local * (1 - hidden) + self.fill * hidden))  # (m, 1, h, w)
        target = normalise_patches(local, settings.patch_size) if settings.norm_pix else local
        per_image = ((reconstruction - target) ** 2 * hidden).sum(dim=(1, 2, 3)) / hidden.sum(dim=(1, 2, 3))  # (m,)
        return per_image.sum() / n, per_image.mean().detach()

    def learner(self, network, extras, settings, options=None):
        return EncoderLinearProbe(network)

    def checkpoint_fields(self, settings):
        return {"ssl": {"loss": "masked mse", "mask_ratio": settings.mask_ratio, "patch_size": settings.patch_size,
                        "normalised_pixel_target": settings.norm_pix, "mask_fill": self.fill,
                        "decoder_channels": self.decoder_channels,
                        "views": asdict(settings.view_config()), "labels_read": False}}


MAE_RECIPE = MaskedAutoencoderRecipe()
