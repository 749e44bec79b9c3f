"""Where it looked: the heat maps point at the object, come from the predicted class's prototype and
from the forward passes of the prediction, and are drawn only for methods that classify the frozen
features (``fewshot_demo.core.heatmap``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from fewshot_demo.core.heatmap import class_shares, heat_levels, picture_box, unit_prototypes
from fewshot_demo.core.image_task import build_support, classify_images, draws_heat_maps, fit_image_classifier
from fewshot_demo.encoders.image import load_backbone
from fewshot_demo.ui.cards import prediction_cards_html, thumbnail_data_uri

ANIMALS = Path(__file__).resolve().parents[1] / "examples" / "images" / "animals"
CORNERS = {"top-left": (0, 0), "top-right": (1, 0), "bottom-left": (0, 1), "bottom-right": (1, 1)}


def _quadrant_share(shares: np.ndarray, corner: str) -> float:
    """The part of the positive heat in one quadrant of the grid (its middle row and column included)."""
    positive = np.clip(shares, 0.0, None)
    h, w = positive.shape
    column, row = CORNERS[corner]
    rows = slice(h // 2, h) if row else slice(0, (h + 1) // 2)
    columns = slice(w // 2, w) if column else slice(0, (w + 1) // 2)
    return float(positive[rows, columns].sum() / positive.sum())


@pytest.fixture(scope="module")
def animals(backbone):
    support = build_support([(folder.name, sorted(folder.iterdir()))
                             for folder in sorted((ANIMALS / "support").iterdir())])
    return support, fit_image_classifier(support, backbone, "protonet")


def _pasted(picture: np.ndarray, corner: str, canvas: int = 400) -> Image.Image:
    """``picture`` shrunk to half the canvas and pasted into one corner of a white canvas."""
    item = Image.fromarray(picture).convert("RGB")
    item.thumbnail((canvas // 2, canvas // 2))
    column, row = CORNERS[corner]
    white = Image.new("RGB", (canvas, canvas), (255, 255, 255))
    white.paste(item, (column * (canvas - item.width), row * (canvas - item.height)))
    return white


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_an_object_in_a_corner_of_a_white_canvas_puts_most_of_the_heat_there(animals, backbone, name):
    _, classifier = animals
    picture = getattr(skimage.data, name)()
    canvases = [_pasted(picture, corner) for corner in CORNERS]
    predictions = classify_images(classifier, backbone, canvases)
    for corner, prediction in zip(CORNERS, predictions):
        shares = prediction.looked.query.shares
        # A quadrant (with the middle row and column) is 16 of the 49 cells: a third of the heat by chance.
        assert _quadrant_share(shares, corner) > 0.7, (name, corner, np.round(shares, 3))
        opposite = {"top-left": "bottom-right", "bottom-right": "top-left",
                    "top-right": "bottom-left", "bottom-left": "top-right"}[corner]
        assert _quadrant_share(shares, opposite) < 0.15, (name, corner)


def test_the_map_is_the_predicted_class_prototypes_and_sums_to_its_cosine(animals, backbone):
    support, classifier = animals
    queries = [Image.open(path).convert("RGB") for path in sorted((ANIMALS / "query").glob("*/*"))]
    predictions = classify_images(classifier, backbone, queries)
    features, maps = backbone.embed_with_maps(queries)
    prototypes = unit_prototypes(classifier.support_features, classifier.support_labels, classifier.n_way)
    every_class = class_shares(maps, prototypes).numpy()  # (n_query, n_way, 7, 7)
    cosines = torch.nn.functional.normalize(features, dim=1) @ prototypes.T  # (n_query, n_way)
    assert np.allclose(every_class.sum(axis=(2, 3)), cosines.numpy(), atol=2e-3)  # the split is exact
    for row, prediction in enumerate(predictions):
        predicted = classifier.class_names.index(prediction.label)
        assert prediction.looked.class_name == prediction.label
        assert np.allclose(prediction.looked.query.shares, every_class[row, predicted], atol=1e-6)
        for other in set(range(classifier.n_way)) - {predicted}:  # another class's map is another map
            assert not np.allclose(prediction.looked.query.shares, every_class[row, other], atol=1e-3)
        assert list(prediction.looked.nearest) == [index for index, _ in prediction.nearest]
        for index, heat in prediction.looked.nearest.items():
            assert np.array_equal(heat.shares, classifier.support_heat.shares[index, predicted].numpy())
            assert heat.size == support.images[index].size


def test_swapping_the_classes_swaps_the_prototype_the_map_comes_from(animals, backbone):
    support, classifier = animals
    query = Image.open(ANIMALS / "query" / "fish" / "stripedfish.jpg").convert("RGB")
    bird, fish = support.class_names.index("bird"), support.class_names.index("fish")
    looked = classify_images(classifier, backbone, [query])[0].looked
    assert looked.class_name == "fish"
    # The fish photos now under the name "bird", and the bird photos under "fish".
    swapped_labels = support.labels.clone()
    swapped_labels[support.labels == bird], swapped_labels[support.labels == fish] = fish, bird
    swapped_support = type(support)(support.class_names, support.images, swapped_labels, support.sources)
    swapped = classify_images(fit_image_classifier(swapped_support, backbone, "protonet"), backbone, [query])[0]
    assert swapped.looked.class_name == "bird"  # the fish photos' class
    assert np.allclose(swapped.looked.query.shares, looked.query.shares, atol=1e-6)  # the same prototype
    # Fish photos removed: the same query is predicted from another prototype, and its map changes.
    keep = support.labels != fish
    without_fish = type(support)([n for n in support.class_names if n != "fish"],
                                 [image for image, k in zip(support.images, keep) if k],
                                 support.labels[keep] - (support.labels[keep] > fish).long(), [])
    other = classify_images(fit_image_classifier(without_fish, backbone, "protonet"), backbone, [query])[0]
    assert other.looked.class_name != "fish"
    assert not np.allclose(other.looked.query.shares, looked.query.shares, atol=1e-3)


def test_fit_and_classification_read_each_picture_once_with_its_map(backbone, monkeypatch):
    rng = np.random.default_rng(3)
    fresh = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(6)]
    passes = {"maps": 0, "pooled": 0}
    forward_maps, forward = backbone._forward_maps, backbone._forward

    def counted_maps(batch):
        passes["maps"] += len(batch)
        return forward_maps(batch)

    def counted(batch):
        passes["pooled"] += len(batch)
        return forward(batch)

    monkeypatch.setattr(backbone, "_forward_maps", counted_maps)
    monkeypatch.setattr(backbone, "_forward", counted)
    support = build_support([("a", fresh[:2]), ("b", fresh[2:4])])
    classifier = fit_image_classifier(support, backbone, "linear")
    predictions = classify_images(classifier, backbone, fresh[4:])
    assert passes == {"maps": 6, "pooled": 0}  # one pass a picture: its features pooled from its map
    assert all(p.looked is not None and len(p.looked.nearest) == 3 for p in predictions)


def test_only_methods_on_the_frozen_features_of_a_backbone_with_maps_draw_heat_maps(animals, backbone):
    support, _ = animals
    assert backbone.has_feature_maps
    assert draws_heat_maps(backbone, "protonet") and draws_heat_maps(backbone, "linear")
    assert not draws_heat_maps(backbone, "finetune")  # decides on a fine-tuned last stage
    assert not draws_heat_maps(backbone, "adabn")  # decides on re-normalised features
    pixels = load_backbone("pixels28", "cpu")
    assert not draws_heat_maps(pixels, "protonet")  # no feature map: 28x28 pixels
    classifier = fit_image_classifier(support, backbone, "adabn")
    assert classifier.support_heat is None
    query = [support.images[0]]
    prediction = classify_images(classifier, backbone, query)[0]
    assert prediction.looked is None
    cards = prediction_cards_html([prediction], ["q"], [thumbnail_data_uri(query[0])], support.sources)
    assert 'class="fs-looked"' not in cards and "Where it looked" not in cards  # nothing rather than a wrong map


def test_a_card_draws_the_query_and_nearest_heat_maps_with_the_legend(animals, backbone):
    support, classifier = animals
    query = Image.open(ANIMALS / "query" / "bird" / "pigeon.jpg").convert("RGB")
    prediction = classify_images(classifier, backbone, [query])[0]
    cards = prediction_cards_html([prediction], ["pigeon.jpg"], [thumbnail_data_uri(query)], support.sources,
                                  [thumbnail_data_uri(image, 72) for image in support.images])
    assert cards.count('class="fs-veil"') == 1 + len(prediction.nearest)
    assert "brighter = looks more like bird" in cards


def test_heat_levels_and_the_picture_box_follow_the_padding():
    shares = np.zeros((7, 7), dtype=np.float32)
    shares[0, 6] = 2.0
    shares[3, 3] = -1.0  # a negative share counts as none
    levels = heat_levels(shares, 70)
    assert levels.shape == (70, 70) and levels.max() == pytest.approx(1.0) and levels.min() == 0.0
    row, column = np.unravel_index(levels.argmax(), levels.shape)
    assert row < 10 and column > 60  # the top-right cell, upsampled
    assert picture_box(200, 100, 96) == (0, 24, 96, 48)  # a wide picture: white above and below
    assert picture_box(50, 100, 96) == (24, 0, 48, 96)
