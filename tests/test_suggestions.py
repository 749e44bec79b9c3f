"""What to add next: the ranking rules, the advice on a synthetic support set, the labelling loop's
pairing, and the suggestions in the Python and web API answers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_demo.bench.labelling import LoopConfig, episode_splits, format_result, run_loop
from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.core.suggestions import margins, pick, suggest, typicality


def _clusters(seed: int = 0, per_class: int = 6, spread: tuple[float, ...] = (0.3, 0.3, 0.3)) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(len(spread), 32, generator=generator), dim=1) * 4
    features = torch.cat([centres[i] + s * torch.randn(per_class, 32, generator=generator)
                          for i, s in enumerate(spread)])
    return centres, features, torch.arange(len(spread)).repeat_interleave(per_class)


def test_margin_rule_ranks_the_smallest_top_two_margin_first():
    probabilities = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.6, 0.3, 0.1], [0.5, 0.1, 0.4]])
    assert torch.allclose(margins(probabilities), torch.tensor([0.85, 0.05, 0.3, 0.1]))
    features = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    assert pick("margin", probabilities, features, features[:0], 4) == [1, 3, 2, 0]
    advice = suggest(features, torch.tensor([0, 1, 2, 0]), ["a", "b", "c"], [-1] * 4, probabilities, features,
                     rule="margin")
    assert [q.index for q in advice.queries] == [1, 3, 2, 0]
    assert (advice.queries[0].label, advice.queries[0].runner_up) == ("a", "b")


def test_typical_rules_prefer_cluster_centres_and_spread_their_picks():
    centres, features, labels = _clusters()
    outlier = centres[0] * -1  # far from everything
    candidates = torch.cat([features, outlier[None]])
    typical = typicality(candidates, candidates)
    assert int(typical.argmin()) == len(candidates) - 1
    flat = torch.full((len(candidates), 3), 1 / 3)  # every candidate equally uncertain
    chosen = pick("typical_margin", flat, candidates, candidates[:0], 3)
    assert len(candidates) - 1 not in chosen
    assert sorted(int(labels[i]) for i in chosen) == [0, 1, 2]  # one per cluster, not three from one


def test_a_confused_pair_is_reported_with_the_examples_that_cause_it():
    centres, features, labels = _clusters(spread=(0.3, 0.3, 0.3))
    features[0] = centres[1] + 0.05  # an "a" example that looks like the "b"s
    classifier = FewShotClassifier("linear", ["a", "b", "c"], features, labels, "efficientnet_lite0")
    advice = classifier.suggestions()
    pair = advice.confused_pairs[0]
    assert (pair.true_class, pair.predicted_class, pair.mistakes) == ("a", "b", 1)
    mistaken, cause = pair.examples[0]
    assert mistaken == 0 and int(labels[cause]) == 1
    assert advice.queries == []


def test_few_and_spread_out_classes_are_named():
    _, features, labels = _clusters(spread=(0.2, 0.2, 1.5))
    keep = torch.cat([torch.arange(0, 2), torch.arange(6, 18)])  # class a keeps 2 examples
    advice = suggest(features[keep], labels[keep], ["a", "b", "c"], [-1] * len(keep))
    reasons = {(c.name, c.reason) for c in advice.classes}
    assert ("a", "few") in reasons and ("c", "spread") in reasons and ("b", "spread") not in reasons
    assert advice.classes[0].name == "a"  # too few comes first


def test_the_labelling_loop_is_paired_and_its_pool_is_every_other_item():
    _, features, labels = _clusters(per_class=20, spread=(1.0,) * 6)
    config = LoopConfig(n_way=3, n_test=4, rounds=3, episodes=12, seed=3)
    for start, test, pool, episode_label in episode_splits(labels, config):
        used = torch.cat([start, test, pool])
        assert len(set(used.tolist())) == len(used)  # disjoint
        assert len(used) == int((episode_label >= 0).sum())  # every item of the episode's classes
        assert len(pool) == 3 * (20 - 1 - 4)
    result = run_loop(features, labels, "protonet_plain", "efficientnet_lite0", ["margin", "typical_margin"], config)
    runs = result.accuracies
    assert set(runs) == {"margin", "typical_margin", "random"}
    assert all(len(r) == 12 and all(len(a) == 4 for a in r) for r in runs.values())
    assert [r[0] for r in runs["margin"]] == [r[0] for r in runs["random"]]  # the same start, paired
    assert runs["margin"] != runs["random"]
    again = run_loop(features, labels, "protonet_plain", "efficientnet_lite0", ["margin"], config)
    assert again.accuracies["random"] == runs["random"]  # the random picks are seeded per episode
    assert result.difference("margin")[0] == (0.0, 0.0)
    assert "margin − random" in format_result(result)


def test_python_and_web_answers_carry_the_suggestions():
    from fewshot_demo.api import fit
    from fewshot_demo.serving.service import Service

    support = {"greeting": ["hello there", "good morning", "hi, how are you"],
               "weather": ["will it rain?", "is it hot today", "storm warning tonight"]}
    queries = ["hey!", "sunny or cloudy?", "good evening, is it raining?"]
    classifier = fit(support)
    predictions, advice, _ = classifier.predict_and_suggest(queries)
    assert sorted(q.index for q in advice.queries) == [0, 1, 2]
    for query in advice.queries:  # the margins are those of the predictions shown
        top = sorted(predictions[query.index].probabilities.values(), reverse=True)
        assert abs(query.margin - (top[0] - top[1])) < 1e-5 and query.label == predictions[query.index].label
    texts = [t for items in support.values() for t in items]
    labels = [name for name, items in support.items() for _ in items]
    answer = Service().predict_texts(texts, labels, queries)
    suggested = answer["suggestions"]
    assert {q["query"] for q in suggested["queries"]} == set(queries)
    assert suggested["rule"] == advice.rule and isinstance(suggested["classes"], list)


def test_a_handle_is_self_checked_once_at_fit_and_its_predictions_suggest_from_their_own_margins(monkeypatch):
    """/predict's first call costs what the later ones do (the self-check is made by the fit), and the
    margins it suggests by are those of the probabilities it answers."""
    from pathlib import Path

    from fewshot_demo.serving.requests import Upload
    from fewshot_demo.serving.service import Service

    calls = []
    original = FewShotClassifier.self_check
    monkeypatch.setattr(FewShotClassifier, "self_check", lambda self: calls.append(1) or original(self))
    animals = Path(__file__).resolve().parents[1] / "examples" / "images" / "animals"
    folders = sorted((animals / "support").iterdir())[:2]
    files = [(path, folder.name) for folder in folders for path in sorted(folder.glob("*.jpg"))[:3]]
    service = Service()
    handle = service.fit_images([Upload(str(p), p.name) for p, _ in files], [name for _, name in files],
                                "protonet")["handle"]
    assert len(calls) == 1
    queries = [Upload(str(p), p.name) for p in sorted((animals / "query").rglob("*.jpg"))[:3]]
    for _ in range(2):
        answer = service.predict(handle, queries)
        for suggestion in answer["suggestions"]["queries"]:
            top = sorted(answer["predictions"][suggestion["index"]]["probabilities"].values(), reverse=True)
            assert abs(suggestion["margin"] - (top[0] - top[1])) < 1e-3
    assert len(calls) == 1


def test_prototype_held_out_is_the_brute_force_leave_one_out():
    from fewshot_demo.core.suggestions import prototype_held_out

    _, features, labels = _clusters(seed=2, per_class=4, spread=(1.5, 1.5, 1.5))
    labels = labels.clone()
    labels[-1] = 3  # a class with a single item: not held out
    expected = []
    for index in range(len(labels)):
        if int((labels == labels[index]).sum()) < 2:
            expected.append(-1)
            continue
        keep = torch.arange(len(labels)) != index
        means = torch.stack([features[keep & (labels == c)].mean(dim=0) for c in range(4)])
        expected.append(int(((means - features[index]) ** 2).sum(dim=1).argmin()))
    assert prototype_held_out(features, labels) == expected
    assert any(e not in (-1, int(t)) for e, t in zip(expected, labels))  # the case has mistakes to find
