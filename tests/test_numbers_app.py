"""The numbers a fitted classifier shows, against references computed here: probabilities, the
distances to each prototype on the cards, the nearest support items' similarities, the 2-D map, the
self-check's accuracy, per-class accuracy and confusion counts, and the JSON the web API answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numeric_reference import (
    ref_means,
    ref_normalise,
    ref_softmax,
    ref_squared_distances,
)

from fewshot_demo.core.classifier import FewShotClassifier, Prediction
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.serving.service import prediction_json

pytestmark = pytest.mark.usefixtures("single_thread")

#: A text encoder id: the classifier reads any feature vectors, the id only names where they came from.
ENCODER = "minilm"
NAMES = ["apple", "bread", "cheese"]
#: Non-negative 4-d features. apple has 3 items, one of which (the last) lies among bread's; bread has 3;
#: cheese has a single item, which the self-check cannot hold out.
SUPPORT = np.array([
    [1.0, 0.1, 0.0, 0.1],
    [0.9, 0.0, 0.1, 0.2],
    [0.05, 1.0, 0.1, 0.0],
    [0.0, 1.0, 0.1, 0.1],
    [0.1, 0.9, 0.0, 0.0],
    [0.1, 1.0, 0.0, 0.2],
    [0.0, 0.1, 1.0, 0.1],
])
LABELS = np.array([0, 0, 0, 1, 1, 1, 2])
QUERY = np.array([[0.8, 0.3, 0.1, 0.1], [0.2, 0.6, 0.5, 0.1], [0.1, 0.2, 0.9, 0.3]])


def t(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float32)


def fitted(method: str = "protonet") -> FewShotClassifier:
    return FewShotClassifier(method, NAMES, t(SUPPORT), torch.as_tensor(LABELS), ENCODER)


# ------------------------------------------------------------------------------------ self-check
def test_self_check_accuracy_is_over_the_held_out_items_only():
    """6 of 7 items can be held out (cheese has one); 5 of them are right: 5/6, not 5/7."""
    check = fitted().self_check()
    assert check.predictions == [0, 0, 1, 1, 1, 1, -1]
    assert check.confusion.tolist() == [[2, 1, 0], [0, 3, 0], [0, 0, 0]]
    assert check.accuracy == pytest.approx(5 / 6)
    assert check.per_class == {"apple": pytest.approx(2 / 3), "bread": 1.0, "cheese": None}
    assert check.confused_pairs == [("apple", "bread", 1)]


def test_self_check_refits_the_method_on_the_other_items():
    """Each held-out prediction is what the method fitted on the other six items predicts."""
    check = fitted("protonet").self_check()
    for index in range(6):
        keep = np.arange(7) != index
        support = ref_normalise(SUPPORT[keep], SUPPORT[keep])
        query = ref_normalise(SUPPORT[keep], SUPPORT[index : index + 1])
        nearest = ref_squared_distances(query, ref_means(support, LABELS[keep])).argmin()
        assert check.predictions[index] == nearest


def test_a_self_check_with_nothing_to_hold_out_has_no_accuracy():
    classifier = FewShotClassifier("protonet", NAMES[:2], t(SUPPORT[[0, 3]]), torch.tensor([0, 1]), ENCODER)
    check = classifier.self_check()
    assert check.accuracy is None and check.per_class == {"apple": None, "bread": None}
    assert check.confusion.sum() == 0 and check.predictions == [-1, -1]


# ------------------------------------------------------------------------------------ predictions
def test_prediction_numbers_match_the_references():
    classifier = fitted("linear")
    predictions = classifier.predict(t(QUERY), n_nearest=3)
    probe = LinearProbe().fit(t(SUPPORT), torch.as_tensor(LABELS))
    probabilities = probe.predict_proba(t(QUERY)).numpy()
    support, query = ref_normalise(SUPPORT, SUPPORT), ref_normalise(SUPPORT, QUERY)
    distances = ref_squared_distances(query, ref_means(support, LABELS))
    similarity = query @ support.T  # unit rows: cosine similarities
    for row, prediction in enumerate(predictions):
        # The probabilities are the method's (here the linear probe's), in class order.
        assert list(prediction.probabilities) == NAMES
        np.testing.assert_allclose(list(prediction.probabilities.values()), probabilities[row], atol=1e-5)
        assert prediction.label == NAMES[int(probabilities[row].argmax())]
        # Distances: squared Euclidean to each prototype on the normalised features, whatever the method.
        np.testing.assert_allclose(list(prediction.prototype_distances.values()), distances[row], atol=1e-5)
        # Nearest: the most similar support items by cosine, best first.
        order = np.argsort(-similarity[row])[:3]
        assert [index for index, _ in prediction.nearest] == order.tolist()
        np.testing.assert_allclose([s for _, s in prediction.nearest], similarity[row, order], atol=1e-5)


def test_protonet_probabilities_are_the_softmax_of_the_distances_shown():
    """For ProtoNet the cards' two columns agree: probabilities = softmax(-8 * distances shown)."""
    for prediction in fitted("protonet").predict(t(QUERY)):
        distances = np.array([list(prediction.prototype_distances.values())])
        np.testing.assert_allclose(list(prediction.probabilities.values()), ref_softmax(-8.0 * distances)[0], atol=1e-5)


def test_a_saved_and_loaded_classifier_gives_the_same_numbers(tmp_path):
    classifier = fitted("linear")
    loaded = FewShotClassifier.load(classifier.save(tmp_path / "c.safetensors"))
    for before, after in zip(classifier.predict(t(QUERY)), loaded.predict(t(QUERY))):
        np.testing.assert_allclose(list(after.probabilities.values()), list(before.probabilities.values()), atol=1e-6)
        np.testing.assert_allclose(list(after.prototype_distances.values()), list(before.prototype_distances.values()),
                                   atol=1e-6)


# ------------------------------------------------------------------------------------ the 2-D map
def test_the_2d_map_is_pca_of_the_normalised_support():
    from sklearn.decomposition import PCA  # deferred: slow to import

    coordinates = fitted().embedding_map(t(QUERY))
    support = ref_normalise(SUPPORT, SUPPORT)
    pca = PCA(n_components=2).fit(support)
    want_support = pca.transform(support)
    signs = np.sign((coordinates["support"] * want_support).sum(axis=0))
    np.testing.assert_allclose(coordinates["support"] * signs, want_support, atol=1e-5)
    np.testing.assert_allclose(coordinates["prototypes"] * signs, pca.transform(ref_means(support, LABELS)), atol=1e-5)
    np.testing.assert_allclose(coordinates["query"] * signs, pca.transform(ref_normalise(SUPPORT, QUERY)), atol=1e-5)
    assert fitted().embedding_map()["query"].shape == (0, 2)


# ------------------------------------------------------------------------------------ the web API's JSON
def test_the_api_rounds_probabilities_and_similarities_and_names_each_nearest_items_class():
    prediction = Prediction(label="bread", probabilities={"apple": 0.123456, "bread": 0.765432, "cheese": 0.111112},
                            prototype_distances={"apple": 1.0, "bread": 0.2, "cheese": 1.5},
                            nearest=[(4, 0.987654), (0, 0.456789)])
    items = [f"item {i}" for i in range(7)]
    answer = prediction_json(prediction, "q", items, NAMES, LABELS.tolist())
    assert answer["label"] == "bread" and answer["query"] == "q"
    assert answer["probabilities"] == {"apple": 0.1235, "bread": 0.7654, "cheese": 0.1111}
    assert answer["nearest"] == [{"item": "item 4", "class": "bread", "similarity": 0.9877},
                                 {"item": "item 0", "class": "apple", "similarity": 0.4568}]
    # Support items beyond the names given (a loaded classifier keeps no items) are numbered.
    assert prediction_json(prediction, "q", [], NAMES, LABELS.tolist())["nearest"][0]["item"] == "support item 5"
