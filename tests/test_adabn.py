"""AdaBN: the backbone's batch-norm statistics re-estimated on the episode's images, without labels."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from fewshot_demo.methods import LearnerContext, get_method, make_learner
from fewshot_demo.methods.adabn import PIXELS224, adapt_batch_norm
from fewshot_demo.methods.protonet import PrototypicalNetwork

pytestmark = pytest.mark.usefixtures("single_thread")


def _garment(kind: str, variant: int) -> Image.Image:
    """Light shapes on black, as Fashion-MNIST items are: far from ImageNet's photos."""
    image = Image.new("RGB", (64, 64), "black")
    draw = ImageDraw.Draw(image)
    d = variant * 3
    if kind == "boot":
        draw.rectangle((20 + d, 10, 34 + d, 50), fill=(200, 200, 200))
        draw.rectangle((20 + d, 40, 54, 54), fill=(200, 200, 200))
    else:
        draw.ellipse((12, 12 + d, 52, 40 + d), fill=(150, 150, 150))
    return image


@pytest.fixture(scope="module")
def episode(backbone):
    images = [_garment(kind, v) for kind in ("boot", "bag") for v in range(4)]
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    return backbone.prepare(PIXELS224, images), backbone.embed(images), labels


def test_no_share_of_the_episode_statistics_is_prototypes_on_the_pretrained_features(backbone, episode):
    pixels, features, labels = episode
    support, query = [0, 1, 4, 5], [2, 3, 6, 7]
    context = LearnerContext("efficientnet_lite0", 1280)
    kept = make_learner("adabn", context, target_weight=0.0).fit(pixels[support], labels[support])
    plain = PrototypicalNetwork().fit(features[support], labels[support])
    assert torch.allclose(kept.predict_proba(pixels[query]), plain.predict_proba(features[query]), atol=1e-4)
    adapted = make_learner("adabn", context).fit(pixels[support], labels[support]).predict_proba(pixels[query])
    assert adapted.shape == (4, 2) and torch.equal(adapted.argmax(dim=1), labels[query])
    with torch.no_grad():  # with the episode's statistics the features move
        moved = adapt_batch_norm(backbone.model, 1.0)(pixels)
    assert (moved - features).abs().max() > 0.1


def test_the_shared_backbone_is_never_modified(backbone, episode):
    pixels, _, _ = episode
    before = {name: value.clone() for name, value in backbone.model.state_dict().items()}
    adapted = adapt_batch_norm(backbone.model, 1.0)
    with torch.no_grad():
        adapted(pixels)
    after = backbone.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not backbone.model.training


def test_adabn_is_a_transductive_transfer_method_on_whole_images():
    spec = get_method("adabn")
    assert spec.family == "transfer" and spec.transductive and spec.input_kind("image") == PIXELS224
    assert spec.unavailable_reason("image", "efficientnet_lite0") is None
    assert "cannot prepare" in spec.unavailable_reason("image", "resnet50")
    assert spec.unavailable_reason("text", "minilm") is not None
