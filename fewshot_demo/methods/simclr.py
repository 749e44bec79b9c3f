"""SimCLR: a Conv-4 pretrained without labels by telling two random views of an image apart from the rest."""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_demo.data.views import apply_views, draw_views
from fewshot_demo.methods.encoder_probe import EncoderLinearProbe
from fewshot_demo.methods.meta_recipe import MetaRecipe


def nt_xent(first: Tensor, second: Tensor, rows, temperature: float) -> tuple[Tensor, Tensor]:
    """SimCLR's normalised temperature-scaled cross-entropy, summed over some anchors.

    The batch has 2n views: ``first[i]`` and ``second[i]`` come from image i. Each view is an anchor
    whose positive is the other view of its image and whose negatives are the other 2n - 2 views.

    Args:
        first, second: (n, d) L2-normalised projections of the two views of every image in the batch.
        rows: the images (positions in 0..n-1) whose two views are the anchors summed here: a
            process's share of the batch.
        temperature: divides the cosine similarities.

    Returns:
        (sum of the anchors' losses, number of anchors whose positive is the most similar view).
    """
    n = len(first)
    rows = torch.as_tensor(rows, dtype=torch.long, device=first.device)
    views = torch.cat([first, second])  # (2n, d)
    anchors = torch.cat([rows, rows + n])  # (2m,)
    logits = views[anchors] @ views.T / temperature  # (2m, 2n)
    logits[torch.arange(len(anchors), device=first.device), anchors] = float("-inf")  # not itself
    positives = torch.cat([rows + n, rows])  # (2m,)
    loss = F.cross_entropy(logits, positives, reduction="sum")
    hits = (logits.argmax(dim=1) == positives).sum().detach()
    return loss, hits


class SimCLRRecipe(MetaRecipe):
    """SimCLR (Chen, Kornblith, Norouzi & Hinton, ICML 2020) on unlabelled 28x28 images.

    Two random views of every image of a batch (``data.views``: random resized crop, contrast,
    noise; mirroring where ``--flip`` says it is sensible) go through the Conv-4 and a two-layer
    projection head; the NT-Xent loss pulls the two views of an image together and pushes the other
    views of the batch away. The head is dropped after training (its output throws away what the
    views do not share; the layer before it transfers better, as the paper found), and the Conv-4's
    frozen embedding is read by a linear head fitted on the support (``EncoderLinearProbe``: the
    paper's linear evaluation).

    No batch normalisation in the head: Conv-4 uses GroupNorm, so nothing depends on which images
    share a batch and a batch split over processes computes what one process does.
    """

    key = "simclr"
    outer_update = "batch"
    metric_name = "pair_acc"

    def __init__(self, projection_dim: int = 64, hidden_dim: int = 128) -> None:
        self.projection_dim = projection_dim
        self.hidden_dim = hidden_dim

    def init_heads(self, network, settings):
        device = next(network.parameters()).device
        return nn.Sequential(
            nn.Linear(network.embed_dim, self.hidden_dim), nn.ReLU(), nn.Linear(self.hidden_dim, self.projection_dim)
        ).to(device)

    def batch_loss(self, network, heads, settings, images, generator, world):
        n = len(images)
        views = settings.view_config()
        first, second = draw_views(n, views, generator), draw_views(n, views, generator)
        mine = world.share(n)
        local = images[torch.as_tensor(mine, device=images.device)]
        both = torch.cat([apply_views(local, first.take(mine)), apply_views(local, second.take(mine))])
        projections = F.normalize(heads(network(both)), dim=1)  # (2m, projection_dim)
        m = len(mine)
        loss, hits = nt_xent(world.gather(projections[:m]), world.gather(projections[m:]), mine, settings.temperature)
        return loss / (2 * n), hits.float() / (2 * m)

    def learner(self, network, extras, settings, options=None):
        return EncoderLinearProbe(network)

    def checkpoint_fields(self, settings):
        return {"ssl": {"loss": "nt-xent", "temperature": settings.temperature, "projection_head": [
            self.hidden_dim, self.projection_dim], "views": asdict(settings.view_config()), "labels_read": False}}


SIMCLR_RECIPE = SimCLRRecipe()
