"""The bundled weights are real; the fitted classifier explains, self-checks, saves and refuses bad files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image
from safetensors.torch import save_file

from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.core.image_task import (
    build_support,
    classify_images,
    fit_image_classifier,
)
from fewshot_demo.data.images import load_image
from fewshot_demo.encoders import image as image_encoders
from fewshot_demo.encoders.image import BackboneUnavailableError, load_backbone

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
EGYPTIAN_CAT, ESPRESSO = 285, 967


def test_bundled_weights_are_real_imagenet_weights(backbone):
    chelsea, _ = backbone.classify_imagenet(Image.fromarray(skimage.data.chelsea()))
    coffee, _ = backbone.classify_imagenet(Image.fromarray(skimage.data.coffee()))
    assert (chelsea, coffee) == (EGYPTIAN_CAT, ESPRESSO)


def test_embeddings_are_batched_cached_and_deterministic(backbone):
    images = [Image.fromarray(skimage.data.chelsea()), Image.fromarray(skimage.data.coffee())]
    first = backbone.embed(images)
    assert first.shape == (2, backbone.feature_dim) == (2, 1280)
    again = backbone.embed(images[::-1])
    assert torch.allclose(again, first.flip(0))


def test_two_requests_embed_at_the_same_time_and_share_the_cache(backbone, monkeypatch):
    """One user's fit must not hold up another user's query: forward passes are not serialised."""
    import threading

    both_inside = threading.Barrier(2, timeout=20)  # broken if one forward pass waits for the other
    forward, calls = backbone._forward, []

    def meeting_forward(batch):
        calls.append(len(batch))
        both_inside.wait()
        return forward(batch)

    monkeypatch.setattr(backbone, "_forward", meeting_forward)
    rng = torch.Generator().manual_seed(7)
    fresh = [Image.fromarray(torch.randint(0, 256, (40, 40, 3), generator=rng, dtype=torch.uint8).numpy())
             for _ in range(2)]
    results, errors = {}, []

    def embed(i):
        try:
            results[i] = backbone.embed([fresh[i], fresh[i]], batch_size=1)  # the same image twice: one pass
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=embed, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and calls == [1, 1]
    monkeypatch.setattr(backbone, "_forward", lambda batch: pytest.fail("cached images are not embedded again"))
    assert torch.equal(backbone.embed(fresh), torch.stack([results[0][0], results[1][0]]))
    assert torch.equal(results[0][0], results[0][1])


def test_the_cpu_network_gives_the_modules_features_and_serves_only_its_input_size(backbone, monkeypatch):
    """The traced network serves the forward passes on the CPU; a changed feature would change every
    prediction, so it is compared with the module itself, and other input sizes go to the module."""
    assert backbone._cpu_network is not None
    images = [Image.fromarray(skimage.data.chelsea()), Image.fromarray(skimage.data.coffee())]
    batch = torch.stack([backbone.preprocess(image) for image in images])
    with torch.inference_mode():
        module = backbone.model((batch - backbone._mean) / backbone._std)
    assert torch.allclose(backbone._forward(batch), module, rtol=1e-3, atol=1e-4)
    calls = []
    monkeypatch.setattr(backbone, "_cpu_network", lambda batch: calls.append(batch.shape) or pytest.fail("used"))
    assert backbone._forward(torch.rand(1, 3, 192, 192)).shape == (1, 1280)  # the module, at another size
    assert calls == []


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the warning is what this test is about
def test_a_network_that_traces_wrongly_is_not_used():
    from torch import nn

    from fewshot_demo.encoders.image import cpu_inference_network

    class BatchDependent(nn.Module):  # tracing keeps the branch taken for one image only
        def forward(self, x):
            flat = x.flatten(1)
            return flat[:, :4] if x.shape[0] == 1 else flat[:, 4:8]

    assert cpu_inference_network(BatchDependent(), (1, 4, 4)) is None
    assert cpu_inference_network(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), (3, 8, 8)) is not None


def test_hub_backbone_offline_fails_fast_and_names_the_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(BackboneUnavailableError, match="bundled default 'efficientnet_lite0' works offline"):
        load_backbone("resnet50", "cpu")
    assert time.perf_counter() - start < 30  # no long retry loop (generous: a slow CI machine)


def test_the_default_backbone_outlives_the_cache_of_the_others():
    """Three hub or ensemble backbones tried by visitors must not push the default out (a 16 s reload)."""
    default = load_backbone()
    image_encoders._load_backbone.cache_clear()  # as if four other backbones had filled the cache
    assert load_backbone() is default and load_backbone("efficientnet_lite0") is default


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        load_backbone("vgg", "cpu")


def _support(set_name: str = "animals"):
    root = EXAMPLES / set_name / "support"
    return build_support([(d.name, sorted(map(str, d.iterdir()))) for d in sorted(root.iterdir())])


@pytest.fixture(scope="module")
def fitted(backbone):
    return fit_image_classifier(_support(), backbone, "protonet_plain")


def test_example_queries_are_classified_with_explanations(fitted, backbone):
    query_paths = sorted((EXAMPLES / "animals" / "query").glob("*/*.jpg"))
    predictions = classify_images(fitted, backbone, [load_image(p) for p in query_paths])
    correct = sum(p.label == path.parent.name for p, path in zip(predictions, query_paths))
    assert correct >= len(query_paths) - 2
    for prediction in predictions:
        assert abs(sum(prediction.probabilities.values()) - 1) < 1e-5
        nearest_distance = min(prediction.prototype_distances, key=prediction.prototype_distances.get)
        assert nearest_distance == prediction.label  # protonet: the closest prototype wins
        assert len(prediction.nearest) == 3 and prediction.nearest[0][1] >= prediction.nearest[1][1]


def test_self_check_and_map(fitted):
    check = fitted.self_check()
    assert check.confusion.sum() == 15 and 0.6 <= check.accuracy <= 1.0
    coordinates = fitted.embedding_map(fitted.support_features[:2])
    assert coordinates["support"].shape == (15, 2) and coordinates["prototypes"].shape == (3, 2)
    assert coordinates["query"].shape == (2, 2)


@pytest.mark.parametrize("method", ["protonet", "linear"])
def test_save_and_load_round_trip(tmp_path, backbone, method):
    classifier = fit_image_classifier(_support(), backbone, method)
    path = classifier.save(tmp_path / "c.safetensors")
    loaded = FewShotClassifier.load(path, expected_encoder_id="efficientnet_lite0")
    assert loaded.class_names == classifier.class_names and loaded.method == method
    query = classifier.support_features[::4]
    assert torch.allclose(loaded.learner.predict_proba(query), classifier.learner.predict_proba(query), atol=1e-6)


def test_loading_refuses_other_backbones_tampering_and_foreign_files(tmp_path, fitted):
    path = fitted.save(tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match="made with backbone 'efficientnet_lite0', but 'resnet50' is selected"):
        FewShotClassifier.load(path, expected_encoder_id="resnet50")

    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside a tensor
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="modified after it was saved"):
        FewShotClassifier.load(tampered)

    header_length = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + header_length].decode()
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(bytes(data[:8]) + header.replace("bird", "bXrX").encode() + bytes(data[8 + header_length :]))
    with pytest.raises(ValueError, match="modified after it was saved"):
        FewShotClassifier.load(renamed)

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="junk.safetensors is not a saved classifier file"):
        FewShotClassifier.load(junk)

    foreign = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not a saved few-shot classifier"):
        FewShotClassifier.load(foreign)

    other_format = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other_format), metadata={"fewshot_demo": json.dumps({"format": "something"})})
    with pytest.raises(ValueError, match="not ours"):
        FewShotClassifier.load(other_format)
