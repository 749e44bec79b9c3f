"""The lite_ensemble backbone: its combination (flip averaging, per-member normalisation, member order),
its members' bundled weights, save/load and ONNX export through the app's own paths, and that the
head the bench recommends on it centres on the support alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skimage_data
from torch import nn

from fewshot_demo.bench.bundled import BDCSPNReference, CosinePrototypes
from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.core.export import export_image_onnx, normalised_images, onnx_probabilities
from fewshot_demo.core.image_task import build_support, fit_image_classifier
from fewshot_demo.data.images import load_image
from fewshot_demo.encoders.backbones import BACKBONES
from fewshot_demo.encoders.efficientnet_lite import LiteEnsemble, load_bundled_lite
from fewshot_demo.encoders.image import ImageBackbone, load_backbone
from fewshot_demo.methods import LearnerContext, make_learner
from fewshot_demo.ui import image_tab


class _Stub(nn.Module):
    """A small network that is not mirror-symmetric: features of an image and its mirror differ."""

    def __init__(self, seed: int, dim: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, dim, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.zero_()
        self.ramp = nn.Parameter(torch.linspace(0.0, 2.0, 64), requires_grad=False)  # weighs columns unequally

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = F.relu(self.conv(images))  # (n, dim, s, s)
        weights = F.interpolate(self.ramp[None, None], size=maps.shape[-1], mode="linear")[0, 0]
        return (maps * weights).mean(dim=(2, 3))  # (n, dim)


def _stub_ensemble() -> LiteEnsemble:
    return LiteEnsemble([_Stub(1, 3), _Stub(2, 4), _Stub(3, 5)], (24, 32, 40))


def test_each_member_is_normalised_flip_averaged_and_concatenated_in_order():
    ensemble = _stub_ensemble().eval()
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        features = ensemble(images)
        expected = []
        for member, size in zip(ensemble.members, (24, 32, 40)):
            view = images if size == 40 else F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
            plain, mirror = F.normalize(member(view), dim=1), F.normalize(member(view.flip(-1)), dim=1)
            assert not torch.allclose(plain, mirror, atol=1e-3)  # so the next checks can tell a flip happened
            expected.append((plain + mirror) / 2)
        assert features.shape == (2, 3 + 4 + 5)
        assert torch.allclose(features, torch.cat(expected, dim=1), atol=1e-6)  # member order kept
        # Flip-averaged: an image and its mirror image get the same features.
        assert torch.allclose(ensemble(images.flip(-1)), features, atol=1e-5)


def test_the_bundled_lite1_and_lite2_weights_load_strictly_and_know_imagenet():
    tensor = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float()[None] / 255
    for variant, size in ((1, 240), (2, 260)):
        network = load_bundled_lite(variant).eval()
        image = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True)
        with torch.no_grad():
            label = int(network((image - 0.5) / 0.5).argmax())
        assert label in (281, 282, 285), (variant, label)  # tabby, tiger cat, Egyptian cat


def test_centring_reads_the_support_only():
    """The recommended head on the ensemble (``protonet``: power transform, centred on the support mean):
    a query's probabilities do not depend on the other queries, and the centre is the support's."""
    generator = torch.Generator().manual_seed(0)
    support, queries = torch.rand(10, 3840, generator=generator), torch.rand(7, 3840, generator=generator)
    labels = torch.arange(5).repeat_interleave(2)
    learner = make_learner("protonet", LearnerContext("lite_ensemble", 3840)).fit(support, labels)
    together = learner.predict_proba(queries)
    one_by_one = torch.cat([learner.predict_proba(queries[i : i + 1]) for i in range(len(queries))])
    assert torch.allclose(together, one_by_one, atol=1e-6)
    assert torch.allclose(learner.normalizer.center, F.normalize(support.sqrt(), dim=1).mean(0), atol=1e-6)
    # The cosine baseline does not centre; the transductive reference does read the batch.
    assert torch.allclose(CosinePrototypes().fit(support, labels).normalizer.center, torch.zeros(3840))
    reference = BDCSPNReference().fit(support, labels)
    assert not torch.allclose(reference.predict_proba(queries)[:1], reference.predict_proba(queries[:1]))


def test_an_ensemble_classifier_exports_to_onnx_with_the_apps_probabilities(single_thread, tmp_path):
    """The export path of the app on an ensemble of small members: resizing, flips and normalisation in
    the graph give what the app computes."""
    spec = dataclasses.replace(BACKBONES["lite_ensemble"], build=_stub_ensemble, input_size=40)
    backbone = ImageBackbone(spec, torch.device("cpu"))
    images = [Image.new("RGB", (30, 20), color) for color in ("red", "green", "blue", "yellow")]
    images += [Image.fromarray((torch.rand(25, 35, 3) * 255).byte().numpy()) for _ in range(4)]
    classifier = FewShotClassifier.fit(backbone, ["a", "b"], images[:4], torch.tensor([0, 0, 1, 1]), "linear")
    exported = export_image_onnx(classifier, backbone, tmp_path / "ensemble.onnx")
    app = torch.tensor([[p.probabilities[c] for c in ("a", "b")] for p in classifier.classify(backbone, images[4:])])
    assert torch.allclose(onnx_probabilities(exported.path, normalised_images(backbone, images[4:])), app, atol=1e-4)
    assert exported.input_size == 40


@pytest.fixture(scope="module")
def ensemble():
    return load_backbone("lite_ensemble", "cpu")


def test_the_real_ensemble_fits_saves_and_loads(single_thread, ensemble, tmp_path):
    classes, paths = image_tab.example_set("animals")
    support, queries = build_support(classes), [load_image(path) for path in paths[:3]]
    assert ensemble.feature_dim == 3 * 1280 and ensemble.input_kinds == ("features",)
    classifier = fit_image_classifier(support, ensemble, "protonet")
    path = classifier.save(tmp_path / "ensemble.safetensors")
    again = FewShotClassifier.load(path, expected_encoder_id="lite_ensemble")
    before = [p.probabilities for p in classifier.classify(ensemble, queries)]
    after = [p.probabilities for p in again.classify(ensemble, queries)]
    assert before == after
    assert [max(p, key=p.get) for p in after] == [Path(path).parent.name for path in paths[:3]]
