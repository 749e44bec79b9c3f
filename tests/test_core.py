"""Core units: episodes, the learner contract, prototypes, the linear probe, statistics."""

from __future__ import annotations

import math

import pytest
import torch

from fewshot_demo.core.evaluation import mean_and_ci95
from fewshot_demo.core.runner import run_episodes
from fewshot_demo.data.episodes import EpisodeConfig, remap_labels, sample_episodes
from fewshot_demo.methods import (
    LinearProbe,
    PrototypicalNetwork,
    available_methods,
    make_learner,
)
from fewshot_demo.methods.base import check_support
from fewshot_demo.methods.features import (
    FeatureNormalizer,
    NormalizationConfig,
    class_means,
)


def test_prototype_is_the_hand_computed_mean_of_normalised_support():
    support = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    labels = torch.tensor([0, 0, 1, 1])
    plain = NormalizationConfig(power=None, center=False, l2=False)
    learner = PrototypicalNetwork(plain).fit(support, labels)
    assert torch.allclose(learner.prototypes, torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    # With normalisation on, the prototype is the mean of the normalised features.
    normalized = PrototypicalNetwork().fit(support, labels)
    expected = torch.stack([normalized.normalizer(support[:2]).mean(0), normalized.normalizer(support[2:]).mean(0)])
    assert torch.allclose(normalized.prototypes, expected, atol=1e-6)


def test_protonet_predicts_the_nearest_prototype():
    support = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    learner = PrototypicalNetwork().fit(support, labels)
    probabilities = learner.predict_proba(torch.tensor([[0.95, 0.0], [0.0, 0.8]]))
    assert probabilities.shape == (2, 2)
    assert torch.allclose(probabilities.sum(1), torch.ones(2))
    assert probabilities.argmax(1).tolist() == [0, 1]


def test_labels_are_remapped_in_order_of_first_appearance():
    names, labels = remap_labels(["cat", "dog", "cat", "bird"])
    assert names == ["cat", "dog", "bird"]
    assert labels.tolist() == [0, 1, 0, 2]


def test_linear_probe_separates_separable_data():
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 32, generator=generator) * 3
    labels = torch.arange(4).repeat_interleave(10)
    features = centers[labels] + 0.3 * torch.randn(40, 32, generator=generator)
    learner = LinearProbe().fit(features, labels)
    assert (learner.predict(features) == labels).all()
    queries = centers + 0.3 * torch.randn(4, 32, generator=generator)
    assert learner.predict(queries).tolist() == [0, 1, 2, 3]


def test_linear_probe_lowers_the_loss_of_its_prototype_start():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(20, 16, generator=generator)
    labels = torch.arange(2).repeat(10)  # labels unrelated to features: only fitting can separate them
    probe = LinearProbe(inverse_regularization=100.0).fit(features, labels)
    proto = PrototypicalNetwork().fit(features, labels)
    nll = lambda p: torch.nn.functional.nll_loss(p.log(), labels).item()  # noqa: E731
    assert nll(probe.predict_proba(features)) < nll(proto.predict_proba(features))


@pytest.mark.parametrize(
    "labels, message",
    [([0, 0, 0], "at least 2 classes"), ([0, 2], "0..n_way-1"), ([0], "one label per support item")],
)
def test_check_support_rejects_bad_support_sets(labels, message):
    support = torch.zeros(3 if len(labels) != 2 else 2, 4)
    with pytest.raises(ValueError, match=message):
        check_support(support, torch.tensor(labels))


def test_episodes_are_deterministic_disjoint_and_remapped():
    labels = [c for c in range(6) for _ in range(8)]
    config = EpisodeConfig(n_way=3, n_shot=2, n_query=4)
    first = sample_episodes(labels, config, 5, seed=7)
    again = sample_episodes(labels, config, 5, seed=7)
    other = sample_episodes(labels, config, 5, seed=8)
    assert all(torch.equal(a.support_indices, b.support_indices) for a, b in zip(first, again))
    assert any(not torch.equal(a.support_indices, b.support_indices) for a, b in zip(first, other))
    for episode in first:
        assert set(episode.support_indices.tolist()).isdisjoint(episode.query_indices.tolist())
        for index, label in zip(episode.support_indices.tolist(), episode.support_labels.tolist()):
            assert labels[index] == episode.class_ids[label]
        for index, label in zip(episode.query_indices.tolist(), episode.query_labels.tolist()):
            assert labels[index] == episode.class_ids[label]
        assert episode.support_labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_sampling_fails_clearly_when_too_few_classes_have_enough_items():
    labels = [0] * 10 + [1] * 10 + [2] * 3
    with pytest.raises(ValueError, match="only 2 have that many"):
        sample_episodes(labels, EpisodeConfig(n_way=3, n_shot=2, n_query=2), 1)


def test_ci95_arithmetic_matches_known_values():
    mean, ci = mean_and_ci95([0.0, 1.0, 0.0, 1.0])
    assert mean == 0.5
    assert math.isclose(ci, 1.96 * 0.5 / 2)
    assert mean_and_ci95([0.8]) == (0.8, 0.0)


def test_the_runner_runs_every_episode_and_reports_accuracy():
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 8, generator=generator) * 4
    labels = [c for c in range(5) for _ in range(6)]
    items = centers[torch.tensor(labels)] + 0.1 * torch.randn(30, 8, generator=generator)
    episodes = sample_episodes(labels, EpisodeConfig(5, 1, 3), 10, seed=0)
    summary = run_episodes(PrototypicalNetwork, items, episodes, name="protonet").summary()
    assert summary.episodes == 10 and summary.accuracy == 1.0 and summary.ci95 == 0.0


def test_feature_normalizer_centres_on_the_support_mean():
    support = torch.rand(6, 5)
    normalizer = FeatureNormalizer().fit(support)
    out = normalizer(support)
    assert torch.allclose(out.norm(dim=1), torch.ones(6), atol=1e-5)
    assert class_means(out, torch.zeros(6, dtype=torch.long), 1).norm() < 0.5  # centred


def test_registry_builds_fresh_learners_and_rejects_unknown_names():
    assert {"protonet", "linear"} <= set(available_methods())
    assert make_learner("linear") is not make_learner("linear")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        make_learner("nope")


def _two_shifted_clusters(seed: int = 0):
    """Support items sit off-centre in their clusters; the queries reveal where the clusters really are."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 1.0], [4.0, 1.0]])
    support = torch.tensor([[2.6, 1.0], [5.5, 1.0]])  # plain boundary at x = 4.05, the true one at 2
    query_labels = torch.arange(2).repeat_interleave(20)
    query = centers[query_labels] + 0.6 * torch.randn(40, 2, generator=generator)
    return support, torch.tensor([0, 1]), query, query_labels


def test_transductive_prototypes_use_the_query_batch():
    from fewshot_demo.methods.transductive import (
        TransductivePrototypes,
        balance_columns,
    )

    support, labels, query, query_labels = _two_shifted_clusters()
    plain = PrototypicalNetwork(NormalizationConfig(power=None, center=False, l2=False)).fit(support, labels)
    refined = TransductivePrototypes(NormalizationConfig(power=None, center=False, l2=False), temperature=1.0)
    refined.fit(support, labels)
    plain_accuracy = (plain.predict(query) == query_labels).float().mean()
    refined_accuracy = (refined.predict(query) == query_labels).float().mean()
    assert refined_accuracy > plain_accuracy
    # Balancing: every column of the balanced assignment carries the same mass.
    balanced = balance_columns(torch.softmax(torch.randn(12, 3), dim=1))
    assert torch.allclose(balanced.sum(0), torch.full((3,), 4.0), atol=1e-3)
    assert torch.allclose(balanced.sum(1), torch.ones(12), atol=1e-3)
