"""Each learner's numbers against a reference computed here, on tiny examples: normalised features,
prototypes, distances, probabilities, transformed features, losses and adaptation histories.

The references are written out in numpy (float64) from the papers' formulas, not by calling the code
under test, so a change of formula (a distance that is no longer squared, another power transform, a
loss over the wrong pixels) changes a number here even where the predicted class stays the same.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from numeric_reference import (
    ref_means,
    ref_normalise,
    ref_sinkhorn,
    ref_softmax,
    ref_squared_distances,
    ref_transductive,
)
from torch import Tensor, nn

from fewshot_demo.data.views import ViewConfig
from fewshot_demo.methods import LearnerContext, make_learner
from fewshot_demo.methods import mae as mae_module
from fewshot_demo.methods.adabn import adapt_batch_norm
from fewshot_demo.methods.baselinepp import BaselinePlusPlus, BaselinePPConfig
from fewshot_demo.methods.features import (
    FeatureNormalizer,
    NormalizationConfig,
    class_means,
)
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.maml import MAML, MAMLConfig, adapt, zero_head
from fewshot_demo.methods.matchingnet import MatchingNetwork, matching_log_probs
from fewshot_demo.methods.meta_protonet import MetaPrototypicalNetwork, prototype_logits
from fewshot_demo.methods.networks import FeatureProjection
from fewshot_demo.methods.protonet import PrototypicalNetwork
from fewshot_demo.methods.simclr import nt_xent
from fewshot_demo.methods.transductive import balance_columns
from fewshot_demo.runtime.distributed import World

pytestmark = pytest.mark.usefixtures("single_thread")

#: Non-negative features (as pooled post-ReLU backbone features are), two classes of two and three.
SUPPORT = np.array([
    [0.9, 0.1, 0.0, 0.4],
    [0.7, 0.3, 0.1, 0.2],
    [0.1, 0.8, 0.2, 0.3],
    [0.0, 0.9, 0.4, 0.1],
    [0.2, 0.6, 0.1, 0.5],
])
LABELS = np.array([0, 0, 1, 1, 1])
QUERY = np.array([[0.8, 0.2, 0.05, 0.3], [0.1, 0.7, 0.3, 0.2], [0.5, 0.5, 0.2, 0.3]])


def t(array: np.ndarray) -> Tensor:
    return torch.as_tensor(array, dtype=torch.float32)


def labels_t(array: np.ndarray) -> Tensor:
    return torch.as_tensor(array, dtype=torch.long)


# ------------------------------------------------------------------------------------ feature normalisation
def test_the_feature_normalisation_is_the_power_transform_then_cl2n_by_hand():
    normalizer = FeatureNormalizer().fit(t(SUPPORT))
    assert normalizer.apply_power
    np.testing.assert_allclose(normalizer(t(QUERY)).numpy(), ref_normalise(SUPPORT, QUERY), atol=1e-6)
    # The centre is the mean of the power-transformed, L2-normalised support.
    rooted = np.sqrt(SUPPORT) / np.linalg.norm(np.sqrt(SUPPORT), axis=1, keepdims=True)
    np.testing.assert_allclose(normalizer.center.numpy(), rooted.mean(0), atol=1e-6)


def test_signed_features_skip_the_power_transform():
    signed = SUPPORT - 0.3
    normalizer = FeatureNormalizer().fit(t(signed))
    assert not normalizer.apply_power
    np.testing.assert_allclose(normalizer(t(QUERY - 0.3)).numpy(), ref_normalise(signed, QUERY - 0.3, power=None),
                               atol=1e-6)


def test_class_means_are_the_mean_of_each_class():
    np.testing.assert_allclose(class_means(t(SUPPORT), labels_t(LABELS), 2).numpy(), ref_means(SUPPORT, LABELS),
                               atol=1e-7)


# ------------------------------------------------------------------------------------ ProtoNet
def test_protonet_on_plain_features_is_a_softmax_of_negative_squared_distances():
    """Prototypes (1, 0) and (0, 4); the query (1, 1) is 1 and 10 away (squared), not 1 and 3."""
    plain = NormalizationConfig(power=None, center=False, l2=False)
    learner = PrototypicalNetwork(plain, temperature=0.5).fit(
        torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]), torch.tensor([0, 0, 1]))
    assert torch.allclose(learner.prototypes, torch.tensor([[1.0, 0.0], [0.0, 4.0]]))
    query = torch.tensor([[1.0, 1.0]])
    assert torch.allclose(learner.distances(query), torch.tensor([[1.0, 10.0]]))
    expected = np.exp([-0.5, -5.0]) / np.exp([-0.5, -5.0]).sum()
    np.testing.assert_allclose(learner.predict_proba(query).numpy()[0], expected, atol=1e-6)


def test_protonet_on_normalised_features_matches_the_reference():
    learner = PrototypicalNetwork().fit(t(SUPPORT), labels_t(LABELS))
    support, query = ref_normalise(SUPPORT, SUPPORT), ref_normalise(SUPPORT, QUERY)
    prototypes = ref_means(support, LABELS)
    np.testing.assert_allclose(learner.prototypes.numpy(), prototypes, atol=1e-6)
    distances = ref_squared_distances(query, prototypes)
    np.testing.assert_allclose(learner.distances(t(QUERY)).numpy(), distances, atol=1e-5)
    np.testing.assert_allclose(learner.predict_proba(t(QUERY)).numpy(), ref_softmax(-8.0 * distances), atol=1e-5)


def test_the_meta_trained_protonet_uses_squared_distances_in_its_embedding():
    """An identity-initialised projection embeds x as 10 * normalise(x): prototypes and distances there."""
    torch.manual_seed(0)
    network = FeatureProjection(feature_dim=4, rank=2, init_scale=10.0)
    learner = MetaPrototypicalNetwork(network).fit(t(SUPPORT), labels_t(LABELS))
    embed = lambda x: 10.0 * ref_normalise(SUPPORT, x)  # noqa: E731  (its unit rows, scaled)
    prototypes = ref_means(embed(SUPPORT), LABELS)
    np.testing.assert_allclose(learner.prototypes.numpy(), prototypes, atol=1e-5)
    expected = ref_softmax(-ref_squared_distances(embed(QUERY), prototypes))
    np.testing.assert_allclose(learner.predict_proba(t(QUERY)).numpy(), expected, atol=1e-5)
    logits = prototype_logits(t(SUPPORT), labels_t(LABELS), t(QUERY), 2)  # the meta-training loss's logits
    np.testing.assert_allclose(logits.numpy(), -ref_squared_distances(QUERY, ref_means(SUPPORT, LABELS)), atol=1e-6)


# ------------------------------------------------------------------------------------ transductive
def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-negative 16-d features: 3 classes, 2 support items and 4 queries each, close enough that
    the probabilities are not all 0 or 1."""
    generator = np.random.default_rng(seed)
    centres = np.eye(3, 16) + 0.2
    support = np.repeat(centres, 2, axis=0) + generator.random((6, 16))
    query = np.repeat(centres, 4, axis=0) + generator.random((12, 16))
    return support, np.repeat(np.arange(3), 2), query


def test_ptmap_matches_the_reference_with_its_square_root_power_transform():
    support, labels, query = _clusters()
    learner = make_learner("ptmap", LearnerContext("efficientnet_lite0", 16)).fit(t(support), labels_t(labels))
    got = learner.predict_proba(t(query)).numpy()
    want = ref_transductive(support, labels, query, power=0.5, temperature=10.0, n_iter=20, balanced=True, step=0.2)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # The features PT-MAP reads: square roots (not the features themselves), L2, centred on support + query.
    assert learner.normalization.power == 0.5
    unrooted = ref_transductive(support, labels, query, power=1.0, temperature=10.0, n_iter=20, balanced=True, step=0.2)
    assert np.abs(unrooted - want).max() > 1e-2  # the check above tells the two apart


def test_transductive_protonet_matches_the_soft_kmeans_reference():
    support, labels, query = _clusters(1)
    learner = make_learner("protonet_transductive", LearnerContext("efficientnet_lite0", 16))
    got = learner.fit(t(support), labels_t(labels)).predict_proba(t(query)).numpy()
    want = ref_transductive(support, labels, query, power=0.5, temperature=5.0, n_iter=10, balanced=False, step=1.0)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # One query alone: no refinement, a softmax over its squared distances to the support means.
    single = learner.predict_proba(t(query[:1])).numpy()
    both = np.concatenate([support, query[:1]])
    s, q = ref_normalise(both, support), ref_normalise(both, query[:1])
    np.testing.assert_allclose(single, ref_softmax(-5.0 * ref_squared_distances(q, ref_means(s, labels))), atol=1e-5)


def test_sinkhorn_balancing_matches_the_reference():
    p = ref_softmax(np.random.default_rng(0).normal(size=(6, 3)))
    np.testing.assert_allclose(balance_columns(t(p)).numpy(), ref_sinkhorn(p), atol=1e-5)


# ------------------------------------------------------------------------------------ linear probe
def test_the_linear_probe_is_l2_penalised_logistic_regression_at_its_optimum():
    """At the minimum of C * sum CE + |W|^2 / 2 the gradient is zero: W = -C (P - Y)^T X, sum(P - Y) = 0;
    and its probabilities are scikit-learn's for the same objective."""
    from sklearn.linear_model import LogisticRegression  # deferred: slow to import

    support, labels, query = _clusters(2)
    learner = LinearProbe(inverse_regularization=10.0).fit(t(support), labels_t(labels))
    x = ref_normalise(support, support)
    p = ref_softmax(x @ learner.weight.numpy().T.astype(np.float64) + learner.bias.numpy())
    residual = p - np.eye(3)[labels]
    np.testing.assert_allclose(learner.weight.numpy(), -10.0 * residual.T @ x, atol=2e-3)
    np.testing.assert_allclose(residual.sum(axis=0), np.zeros(3), atol=2e-4)
    reference = LogisticRegression(C=10.0, tol=1e-10, max_iter=10_000).fit(x, labels)
    np.testing.assert_allclose(learner.predict_proba(t(query)).numpy(),
                               reference.predict_proba(ref_normalise(support, query)), atol=2e-3)


# ------------------------------------------------------------------------------------ Baseline++
def test_baselinepp_starts_at_scale_times_cosine_to_the_prototypes_and_learns_a_log_scale():
    support, labels, query = _clusters(3)
    learner = BaselinePlusPlus(BaselinePPConfig(steps=1, learning_rate=0.02, initial_scale=10.0))
    learner.fit(t(support), labels_t(labels))
    x = ref_normalise(support, support)
    prototypes = ref_means(x, labels)
    cosine = x @ (prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True)).T
    start = ref_softmax(10.0 * cosine)
    assert learner.losses[0] == pytest.approx(-np.log(start[np.arange(6), labels]).mean(), abs=1e-5)
    # One Adam step moves the log of the scale by the learning rate (Adam's first step is lr * sign).
    assert abs(float(learner.log_scale) - math.log(10.0)) == pytest.approx(0.02, abs=1e-4)
    w = learner.weight.numpy()
    q = ref_normalise(support, query)
    want = ref_softmax(math.exp(float(learner.log_scale)) * (q @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T))
    np.testing.assert_allclose(learner.predict_proba(t(query)).numpy(), want, atol=1e-5)


# ------------------------------------------------------------------------------------ Matching Networks
def test_matching_networks_attention_is_a_softmax_of_scaled_cosines_summed_per_class():
    s, q = SUPPORT - 0.3, QUERY - 0.3
    cosine = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (s / np.linalg.norm(s, axis=1, keepdims=True)).T
    attention = ref_softmax(math.exp(1.5) * cosine)  # (n_query, n_support)
    want = np.stack([attention[:, LABELS == c].sum(axis=1) for c in range(2)], axis=1)
    got = matching_log_probs(t(s), labels_t(LABELS), t(q), 2, torch.tensor(1.5)).exp()
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_the_matching_network_learner_attends_over_its_normalised_support():
    torch.manual_seed(0)
    learner = MatchingNetwork(FeatureProjection(feature_dim=4, rank=2), torch.tensor(2.3))
    learner.fit(t(SUPPORT), labels_t(LABELS))
    s, q = ref_normalise(SUPPORT, SUPPORT), ref_normalise(SUPPORT, QUERY)  # unit rows: cosine = dot
    attention = ref_softmax(math.exp(2.3) * q @ s.T)
    want = np.stack([attention[:, LABELS == c].sum(axis=1) for c in range(2)], axis=1)
    np.testing.assert_allclose(learner.predict_proba(t(QUERY)).numpy(), want, atol=1e-5)


# ------------------------------------------------------------------------------------ MAML
def test_maml_adaptation_history_is_gradient_descent_on_the_support_loss():
    """Adapting only the zero head on fixed embeddings is softmax regression by gradient descent:
    grad W = (P - Y)^T E / n, grad b = mean(P - Y). Step 0 (zero head) has loss log(n_way)."""
    torch.manual_seed(0)
    network = FeatureProjection(feature_dim=4, rank=2, init_scale=2.0)
    support, labels = t(SUPPORT), labels_t(LABELS)
    params = {**{f"network.{k}": v.detach() for k, v in network.named_parameters()},
              **zero_head(2, 4, support)}
    lrs = {"head.weight": torch.tensor(0.7), "head.bias": torch.tensor(0.7)}
    _, history = adapt(network, params, lrs, support, labels, steps=3, create_graph=False)
    e = 2.0 * SUPPORT / np.linalg.norm(SUPPORT, axis=1, keepdims=True)  # the identity projection's embedding
    y = np.eye(2)[LABELS]
    w, b = np.zeros((2, 4)), np.zeros(2)
    want = []
    for step in range(4):
        p = ref_softmax(e @ w.T + b)
        want.append((step, -np.log(p[np.arange(5), LABELS]).mean(), (p.argmax(1) == LABELS).mean()))
        w, b = w - 0.7 * (p - y).T @ e / 5, b - 0.7 * (p - y).mean(axis=0)
    assert [h["step"] for h in history] == [0, 1, 2, 3]
    assert history[0]["support_loss"] == pytest.approx(math.log(2), abs=1e-6)
    for entry, (step, loss, accuracy) in zip(history, want):
        assert entry["support_loss"] == pytest.approx(loss, abs=1e-5)
        assert entry["support_accuracy"] == pytest.approx(accuracy)


def test_the_maml_learner_records_each_step_and_predicts_with_its_adapted_weights():
    torch.manual_seed(0)
    network = FeatureProjection(feature_dim=4, rank=2)
    seen = []
    learner = MAML(network, MAMLConfig(inner_steps=4, inner_lr=0.1), inner_steps=4, on_step=seen.append)
    learner.fit(t(SUPPORT), labels_t(LABELS))
    assert [h["step"] for h in learner.history] == [0, 1, 2, 3, 4] and seen == learner.history
    assert learner.history[0]["support_loss"] == pytest.approx(math.log(2), abs=1e-6)
    losses = [h["support_loss"] for h in learner.history]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))  # each step lowers it
    # The last entry is the loss of the weights it predicts with.
    support_probabilities = learner.predict_proba(t(SUPPORT)).numpy()
    final = -np.log(support_probabilities[np.arange(5), LABELS]).mean()
    assert losses[-1] == pytest.approx(final, abs=1e-5)


def test_a_negative_learned_step_size_leaves_its_tensor_unadapted():
    torch.manual_seed(0)
    network = FeatureProjection(feature_dim=4, rank=2)
    support, labels = t(SUPPORT), labels_t(LABELS)
    params = {**{f"network.{k}": v.detach().requires_grad_() for k, v in network.named_parameters()},
              **zero_head(2, 4, support)}
    lrs = {"network.gain": torch.tensor(-0.5), "head.weight": torch.tensor(0.5), "head.bias": torch.tensor(0.5)}
    with torch.enable_grad():
        adapted, _ = adapt(network, params, lrs, support, labels, steps=2, create_graph=False)
    assert torch.equal(adapted["network.gain"], params["network.gain"])
    assert not torch.equal(adapted["head.weight"], params["head.weight"])


# ------------------------------------------------------------------------------------ AdaBN
def test_adabn_mixes_batch_and_pretrained_statistics_by_target_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, kernel_size=1), nn.BatchNorm2d(3)).eval()
    norm = model[1]
    norm.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    norm.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
    norm.weight.data.copy_(torch.tensor([1.5, 0.5, -1.0]))
    norm.bias.data.copy_(torch.tensor([0.1, 0.2, 0.3]))
    images = torch.randn(4, 2, 3, 3)
    with torch.no_grad():
        hidden = model[0](images).double().numpy()  # (4, 3, 3, 3)
        got = adapt_batch_norm(model, 0.3)(images).numpy()
        kept = adapt_batch_norm(model, 0.0)(images)
        pretrained = model(images)
    batch_mean = hidden.mean(axis=(0, 2, 3))
    batch_var = hidden.var(axis=(0, 2, 3))  # biased, as batch norm normalises with
    mean = 0.3 * batch_mean + 0.7 * norm.running_mean.double().numpy()
    var = 0.3 * batch_var + 0.7 * norm.running_var.double().numpy()
    gamma, beta = norm.weight.detach().double().numpy(), norm.bias.detach().double().numpy()
    shape = (1, 3, 1, 1)
    want = (hidden - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + norm.eps) * gamma.reshape(shape) \
        + beta.reshape(shape)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert torch.allclose(kept, pretrained, atol=1e-6)  # weight 0: the pretrained statistics exactly
    assert torch.equal(norm.running_mean, torch.tensor([0.5, -1.0, 2.0]))  # the model itself is untouched


# ------------------------------------------------------------------------------------ masked autoencoder
class _Fixed(nn.Module):
    """A decoder that returns a given reconstruction whatever it is given."""

    def __init__(self, output: Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.output


class _Recorder(nn.Module):
    """An encoder that remembers what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []

    def forward(self, images: Tensor) -> Tensor:
        self.seen.append(images)
        return images.flatten(1)


def _mae_loss(monkeypatch, images: Tensor, masks: np.ndarray, reconstruction: Tensor, norm_pix: bool = False):
    """MAE's batch loss with the views turned off and the patch masks fixed."""
    monkeypatch.setattr(mae_module, "apply_views", lambda local, views: local)
    monkeypatch.setattr(mae_module, "draw_patch_masks", lambda n, grid, ratio, generator: masks)
    settings = SimpleNamespace(patch_size=4, mask_ratio=0.75, norm_pix=norm_pix, view_config=ViewConfig)
    encoder = _Recorder()
    loss, metric = mae_module.MAE_RECIPE.batch_loss(encoder, _Fixed(reconstruction), settings, images,
                                                    np.random.default_rng(0), World())
    return float(loss), float(metric), encoder.seen[0]


def test_the_masked_autoencoder_scores_the_hidden_pixels_only(monkeypatch):
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    masks = np.zeros((2, 7, 7), dtype=bool)
    masks[0, :3] = True  # 21 of 49 patches hidden in the first image, 10 in the second
    masks[1, 4:, 2:7] = True
    masks[1, 6, 0] = True
    hidden = mae_module.pixel_mask(torch.as_tensor(masks), 4)  # (2, 1, 28, 28)
    # Wrong by 0.5 on every hidden pixel, right on every visible one: the loss is 0.5 ** 2.
    loss, metric, seen = _mae_loss(monkeypatch, images, masks, images + 0.5 * hidden)
    assert loss == pytest.approx(0.25, abs=1e-6) and metric == pytest.approx(0.25, abs=1e-6)
    # Wrong on visible pixels only: nothing the encoder could not see is wrong, the loss is 0.
    loss, _, _ = _mae_loss(monkeypatch, images, masks, images + 0.5 * (1 - hidden))
    assert loss == 0.0
    # Per image, over its own hidden pixels: errors of 0.2 and 0.6 give (0.04 + 0.36) / 2.
    error = torch.tensor([0.2, 0.6]).view(2, 1, 1, 1)
    loss, _, _ = _mae_loss(monkeypatch, images, masks, images + error * hidden)
    assert loss == pytest.approx(0.2, abs=1e-6)
    # The encoder sees the visible pixels and mid-grey (0) where the patches are hidden.
    assert torch.equal(seen.view(2, 1, 28, 28), images * (1 - hidden))


def test_the_normalised_pixel_target_is_each_patch_standardised_by_hand(monkeypatch):
    images = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    patches = images.double().numpy().reshape(7, 4, 7, 4).transpose(0, 2, 1, 3).reshape(7, 7, 16)
    standard = (patches - patches.mean(-1, keepdims=True)) / np.sqrt(patches.var(-1, keepdims=True) + 1e-6)
    target = torch.as_tensor(standard.reshape(7, 7, 4, 4).transpose(0, 2, 1, 3).reshape(1, 1, 28, 28)).float()
    np.testing.assert_allclose(mae_module.normalise_patches(images, 4).numpy(), target.numpy(), atol=1e-4)
    masks = np.zeros((1, 7, 7), dtype=bool)
    masks[0, ::2, ::2] = True
    loss, _, _ = _mae_loss(monkeypatch, images, masks, target, norm_pix=True)
    assert loss == pytest.approx(0.0, abs=1e-8)
    loss, _, _ = _mae_loss(monkeypatch, images, masks, images, norm_pix=True)
    hidden = mae_module.pixel_mask(torch.as_tensor(masks), 4)
    assert loss == pytest.approx(float(((images - target) ** 2 * hidden).sum() / hidden.sum()), rel=1e-5)


# ------------------------------------------------------------------------------------ SimCLR
def test_nt_xent_matches_the_reference_over_every_anchor():
    generator = np.random.default_rng(0)
    first, second = generator.normal(size=(3, 4)), generator.normal(size=(3, 4))
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second /= np.linalg.norm(second, axis=1, keepdims=True)
    views = np.concatenate([first, second])  # (6, 4): view i and view i + 3 are one image's
    total = 0.0
    for anchor in range(6):
        positive = (anchor + 3) % 6
        logits = views @ views[anchor] / 0.5
        others = [j for j in range(6) if j != anchor]
        total += -logits[positive] + np.log(np.exp(logits[others]).sum())
    loss, _ = nt_xent(t(first), t(second), [0, 1, 2], temperature=0.5)
    assert float(loss) == pytest.approx(total, rel=1e-5)
