"""MAML's inner loop and learner: adaptation lowers the support loss, gradients are right."""

from __future__ import annotations

import pytest
import torch

from fewshot_demo.methods.maml import (
    FOMAML,
    MAML,
    MAMLConfig,
    initial_inner_lrs,
    maml_query_loss,
    network_params,
)
from fewshot_demo.methods.matchingnet import MatchingNetwork
from fewshot_demo.methods.meta_protonet import MetaPrototypicalNetwork
from fewshot_demo.methods.networks import Conv4, FeatureProjection
from fewshot_demo.methods.reptile import Reptile, reptile_task_delta


def make_task(n_way: int = 3, n_shot: int = 4, n_query: int = 5, dim: int = 12, seed: int = 0, separation: float = 2.0):
    generator = torch.Generator().manual_seed(seed)
    means = separation * torch.randn(n_way, dim, generator=generator)
    support_labels = torch.arange(n_way).repeat_interleave(n_shot)
    query_labels = torch.arange(n_way).repeat_interleave(n_query)
    support = means[support_labels] + torch.randn(len(support_labels), dim, generator=generator)
    query = means[query_labels] + torch.randn(len(query_labels), dim, generator=generator)
    return support, support_labels, query, query_labels


def tiny_network(dim: int = 12, seed: int = 0) -> FeatureProjection:
    torch.manual_seed(seed)
    network = FeatureProjection(dim, rank=3)
    with torch.no_grad():  # move away from the identity so every parameter matters
        network.gain.normal_(0, 0.3)
        network.up.normal_(0, 0.3)
    return network


def test_inner_step_lowers_support_loss_and_history_is_recorded():
    support, labels, query, _ = make_task()
    seen = []
    learner = MAML(tiny_network(), MAMLConfig(inner_steps=3, inner_lr=0.3), on_step=seen.append)
    learner.fit(support, labels)
    history = learner.history
    assert [entry["step"] for entry in history] == [0, 1, 2, 3]
    assert seen == history
    assert history[1]["support_loss"] < history[0]["support_loss"]
    assert history[-1]["support_loss"] < history[0]["support_loss"]
    assert history[0]["support_loss"] == pytest.approx(torch.log(torch.tensor(3.0)).item(), abs=1e-5)  # zero head
    probabilities = learner.predict_proba(query)
    assert probabilities.shape == (len(query), 3)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(query)), atol=1e-5)


def test_inner_steps_and_step_size_are_constructor_arguments():
    support, labels, _, _ = make_task()
    learner = MAML(tiny_network(), MAMLConfig(inner_steps=5), inner_steps=2, inner_lr=0.05).fit(support, labels)
    assert len(learner.history) == 3
    assert all(float(lr) == pytest.approx(0.05) for lr in learner.inner_lrs.values())
    with pytest.raises(ValueError, match="inner_lr must be positive"):
        MAML(tiny_network(), inner_lr=-1.0)


@pytest.mark.parametrize("n_way", [2, 7, 20])
def test_any_number_of_classes(n_way):
    support, labels, query, _ = make_task(n_way=n_way, n_shot=1, n_query=2)
    for learner in (MAML(tiny_network()), MatchingNetwork(tiny_network()), MetaPrototypicalNetwork(tiny_network())):
        assert learner.fit(support, labels).predict_proba(query).shape == (len(query), n_way)


def test_wrong_input_shape_is_refused_with_the_fix():
    support, labels, _, _ = make_task(dim=12)
    with pytest.raises(ValueError, match="backbone"):
        MAML(tiny_network(dim=16)).fit(support, labels)
    with pytest.raises(ValueError, match="pixels28"):
        MetaPrototypicalNetwork(Conv4(hidden=8)).fit(support, labels)


def _outer_gradients(network, config, task, inner_lrs):
    loss, _ = maml_query_loss(network, inner_lrs, *task, config)
    params = list(network_params(network).values())
    return loss, torch.autograd.grad(loss, params)


def test_second_order_gradients_match_finite_differences_and_differ_from_first_order():
    torch.manual_seed(0)
    network = tiny_network(dim=5).double()
    support, labels, query, query_labels = make_task(n_way=2, n_shot=2, n_query=3, dim=5, separation=0.5)
    task = (support.double(), labels, query.double(), query_labels)
    inner_lrs = {name: lr.double() for name, lr in initial_inner_lrs(network, 0.05).items()}
    second = MAMLConfig(inner_steps=2, inner_lr=0.05, first_order=False)
    loss, grads = _outer_gradients(network, second, task, inner_lrs)
    assert 0.1 < loss.item() < 5  # not saturated, so the gradients are informative
    _, first_order_grads = _outer_gradients(network, MAMLConfig(inner_steps=2, inner_lr=0.05, first_order=True), task, inner_lrs)

    epsilon = 1e-6
    for parameter, grad in zip(network.parameters(), grads):
        flat = parameter.data.view(-1)
        for index in range(0, flat.numel(), max(1, flat.numel() // 4)):
            original = flat[index].item()
            flat[index] = original + epsilon
            plus, _ = maml_query_loss(network, inner_lrs, *task, second)
            flat[index] = original - epsilon
            minus, _ = maml_query_loss(network, inner_lrs, *task, second)
            flat[index] = original
            numeric = (plus.item() - minus.item()) / (2 * epsilon)
            assert grad.view(-1)[index].item() == pytest.approx(numeric, rel=1e-4, abs=1e-7)
    difference = torch.cat([(a - b).view(-1) for a, b in zip(grads, first_order_grads)]).norm()
    assert difference > 1e-2 * torch.cat([g.view(-1) for g in grads]).norm()


def test_learned_step_sizes_receive_gradients():
    network = tiny_network()
    inner_lrs = {name: lr.clone().requires_grad_() for name, lr in initial_inner_lrs(network, 0.3).items()}
    loss, _ = maml_query_loss(network, inner_lrs, *make_task(), MAMLConfig(inner_steps=2))
    loss.backward()
    assert all(lr.grad is not None and lr.grad.abs() > 0 for lr in inner_lrs.values())


def test_fomaml_and_reptile_share_the_adaptation():
    support, labels, query, _ = make_task()
    network = tiny_network()
    expected = MAML(network, MAMLConfig(inner_lr=0.2)).fit(support, labels).predict_proba(query)
    assert torch.allclose(FOMAML(network, MAMLConfig(inner_lr=0.2)).fit(support, labels).predict_proba(query), expected)
    assert torch.allclose(Reptile(network, MAMLConfig(inner_lr=0.2)).fit(support, labels).predict_proba(query), expected)


def test_reptile_delta_moves_towards_lower_task_loss():
    support, labels, _, _ = make_task()
    network = tiny_network()
    delta = reptile_task_delta(network, support, labels, MAMLConfig(inner_steps=3, inner_lr=0.3))
    assert set(delta) == set(network_params(network))
    assert delta["network.up"].abs().sum() > 0


def test_conv4_maml_adapts_on_images():
    torch.manual_seed(0)
    images = torch.randn(6, 1, 28, 28)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    learner = MAML(Conv4(hidden=8), MAMLConfig(inner_steps=2, inner_lr=0.5)).fit(images, labels)
    assert learner.history[-1]["support_loss"] < learner.history[0]["support_loss"]
    assert learner.predict_proba(images[:2]).shape == (2, 3)


def test_one_thread_is_restored():
    from fewshot_demo.methods.networks import one_thread

    before = torch.get_num_threads()
    with one_thread(True):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
