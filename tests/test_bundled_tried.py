"""The heads that bench.bundled_tried measures against BD-CSPN: each does what its row says (centring on
the base data, sampling around calibrated support statistics, fitting on the support's views only),
on small synthetic features, offline and deterministic."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from fewshot_demo.bench.bundled_tried import VIEWS, AugmentedSupport, BaseCentredNormalizer, \
    DistributionCalibration, base_centred, views
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.protonet import PrototypicalNetwork


def _features(n: int, d: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


def test_base_centring_moves_the_centre_by_its_mix() -> None:
    base, support = _features(30, seed=1) + 1.0, _features(6, seed=2)
    pre = lambda x: F.normalize(x.sqrt(), dim=1)  # noqa: E731  (the power transform, then L2)
    for mix in (0.0, 0.5, 1.0):
        normalizer = BaseCentredNormalizer(base, mix).fit(support)
        expected = mix * pre(base).mean(0) + (1 - mix) * pre(support).mean(0)
        assert torch.allclose(normalizer.center, expected, atol=1e-6)
    learner = base_centred(PrototypicalNetwork, base, 1.0)()
    learner.fit(support, torch.arange(6) % 3)
    assert torch.allclose(learner.normalizer.center, pre(base).mean(0), atol=1e-6)


def test_distribution_calibration_is_seeded_and_uses_the_base_classes() -> None:
    base, base_labels = _features(40, seed=3), torch.arange(40) % 4
    support, labels, query = _features(5, seed=4), torch.arange(5), _features(7, seed=5)
    first = DistributionCalibration(base, base_labels).fit(support, labels).predict_proba(query)
    again = DistributionCalibration(base, base_labels).fit(support, labels).predict_proba(query)
    assert torch.equal(first, again)
    assert torch.allclose(first.sum(1), torch.ones(7), atol=1e-5)
    moved = DistributionCalibration(base + 0.5, base_labels).fit(support, labels).predict_proba(query)
    assert not torch.allclose(first, moved, atol=1e-4)  # the base statistics reach the head


def test_augmented_support_fits_on_the_views_and_reads_the_query_alone() -> None:
    items = _features(10 * (1 + len(VIEWS)), seed=6).view(10, 1 + len(VIEWS), -1)
    labels = torch.arange(10) % 5
    learner = AugmentedSupport(PrototypicalNetwork).fit(items, labels)
    plain = PrototypicalNetwork().fit(items[:, 0], labels)
    assert not torch.allclose(learner.head.prototypes, plain.prototypes)
    query = items[:4].clone()
    other_views = query.clone()
    other_views[:, 1:] = 0.0
    assert torch.equal(learner.predict_proba(query), learner.predict_proba(other_views))
    linear = AugmentedSupport(LinearProbe).fit(items, labels)
    assert linear.predict_proba(query).shape == (4, 5)


def test_views_keep_the_image_kind_and_fill_with_its_corner() -> None:
    image = Image.new("RGB", (40, 30), (250, 250, 250))
    image.paste((200, 10, 10), (10, 5, 30, 25))
    made = views(image)
    assert len(made) == len(VIEWS)
    assert made[0].size == (32, 24) and made[1].size == (50, 37)
    assert made[1].getpixel((0, 0)) == (250, 250, 250) and made[2].getpixel((0, 0)) == (250, 250, 250)
