"""What to add next: ranked, specific advice after a fit, and the rules that pick items to label.

    advice = suggest(support_features, support_labels, class_names, held_out, query_probabilities, query_features)
    advice.confused_pairs[0].examples     # (held-out support item, the other class's item it looked like)
    advice.classes[0].reason              # "few" or "spread"
    advice.queries[0].index               # the query that would help most if labelled

Everything here is computed from what a fit already has: the leave-one-out predictions of the
self-check (``held_out``), the queries' probabilities and the frozen features. ``pick`` is the one
rule that ranks unlabelled items, shared by the app and the simulated labelling loop
(``fewshot_demo.bench.labelling``), which measured the rules against random picks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: The rules ``pick`` knows; "random" is the labelling loop's control.
RULES = ("margin", "typical", "typical_margin", "random")
#: The rule the app ranks queries by: the one the labelling loop found best (docs/results.md).
DEFAULT_RULE = "typical_margin"
#: A class with fewer examples than this is "too few" (below it leave-one-out says little).
FEW_EXAMPLES = 3
#: A class is "too spread out" when its mean distance to its prototype exceeds the median class's by this factor.
SPREAD_FACTOR = 1.3
#: Above this many support items the advice holds out items against prototypes (``prototype_held_out``)
#: instead of running the method's self-check, one refit per item.
SELF_CHECK_ITEMS = 60
#: Neighbours that define an item's typicality (the mean cosine similarity to them).
TYPICAL_NEIGHBOURS = 5


@dataclass(frozen=True)
class ConfusedPair:
    """Two classes the classifier mixes up, with the examples that cause it.

    Attributes:
        true_class, predicted_class: held-out examples of ``true_class`` were predicted as ``predicted_class``.
        mistakes: how many held-out examples were (leave-one-out).
        torn_queries: queries whose top two classes are this pair and whose margin is under 0.3.
        examples: (support index of the mistaken example, support index of the ``predicted_class``
            example most similar to it): the pair of items that pulled it across.
    """

    true_class: str
    predicted_class: str
    mistakes: int
    torn_queries: int
    examples: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class ClassAdvice:
    """A class whose examples are too few or too spread out.

    Attributes:
        name: the class.
        reason: "few" (fewer than ``FEW_EXAMPLES``) or "spread" (far more spread than the median class).
        n_examples: its support items.
        spread: mean cosine distance of its examples to its prototype (0: all alike).
        outlier: support index of its example farthest from its prototype, or None.
        message: what to do, in one sentence.
    """

    name: str
    reason: str
    n_examples: int
    spread: float
    outlier: int | None
    message: str


@dataclass(frozen=True)
class QuerySuggestion:
    """An unlabelled query that would help if labelled.

    Attributes:
        index: the query's position.
        label: its predicted class; ``runner_up`` the second most likely.
        margin: top-1 minus top-2 probability (small: the classifier cannot tell).
        typicality: mean cosine similarity to its nearest neighbours among the queries and support.
        score: what the rule ranked by (higher first).
    """

    index: int
    label: str
    runner_up: str
    margin: float
    typicality: float
    score: float


@dataclass(frozen=True)
class Suggestions:
    """Ranked advice after a fit; ``to_dict`` is the JSON of ``/predict``'s ``suggestions`` field."""

    confused_pairs: list[ConfusedPair]
    classes: list[ClassAdvice]
    queries: list[QuerySuggestion]
    rule: str = DEFAULT_RULE

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: numbers rounded to 4 places."""
        def rounded(value: Any) -> Any:
            if isinstance(value, float):
                return round(value, 4)
            if isinstance(value, dict):
                return {k: rounded(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [rounded(v) for v in value]
            return value
        return rounded({"rule": self.rule, "confused_pairs": [asdict(p) for p in self.confused_pairs],
                        "classes": [asdict(c) for c in self.classes], "queries": [asdict(q) for q in self.queries]})


# ------------------------------------------------------------------------------------------ rules
def margins(probabilities: Tensor) -> Tensor:
    """(n,) top-1 minus top-2 probability of (n, n_way) probabilities."""
    top = probabilities.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def typicality(candidates: Tensor, context: Tensor, k: int = TYPICAL_NEIGHBOURS) -> Tensor:
    """(n_candidates,) mean cosine similarity of each candidate to its ``k`` nearest items of ``context``
    (itself excluded when it is in it): high in the dense middle of a cluster, low for outliers."""
    a, b = F.normalize(candidates.float(), dim=1), F.normalize(context.float(), dim=1)
    similarity = a @ b.T  # (n_candidates, n_context)
    similarity = similarity.masked_fill(similarity > 1 - 1e-6, float("-inf"))  # the item itself
    k = max(1, min(k, similarity.shape[1] - 1))
    top = similarity.topk(k, dim=1).values
    return torch.where(torch.isfinite(top), top, torch.zeros_like(top)).mean(dim=1)


def pick(rule: str, probabilities: Tensor, candidates: Tensor, labelled: Tensor, n: int,
         generator: torch.Generator | None = None) -> list[int]:
    """The ``n`` candidates to label next, best first.

    Args:
        rule: "margin" (uncertainty sampling: the smallest top-2 margin); "typical" (the most typical
            candidate, farthest from what is labelled or already picked: cluster centres first);
            "typical_margin" (typicality times uncertainty, with the same diversity); "random".
        probabilities: (n_candidates, n_way) the current classifier's probabilities.
        candidates: (n_candidates, d) their frozen features.
        labelled: (n_labelled, d) the support set's features.
        n: how many to pick (at most the candidates).
        generator: for "random".
    """
    n = min(n, len(candidates))
    if rule == "random":
        return torch.randperm(len(candidates), generator=generator)[:n].tolist()
    if rule == "margin":
        return margins(probabilities).argsort().tolist()[:n]
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose from {', '.join(RULES)}")
    typical = typicality(candidates, torch.cat([candidates, labelled]))
    score = typical if rule == "typical" else typical * (1 - margins(probabilities))
    return _diverse(score, F.normalize(candidates.float(), dim=1), F.normalize(labelled.float(), dim=1), n)


def _diverse(score: Tensor, candidates: Tensor, labelled: Tensor, n: int) -> list[int]:
    """Greedy: the best score times the distance to the nearest labelled or already picked item."""
    nearest = (candidates @ labelled.T).max(dim=1).values if len(labelled) else torch.zeros(len(candidates))
    chosen: list[int] = []
    for _ in range(n):
        value = score.clamp_min(1e-6) * (1 - nearest).clamp_min(1e-6)
        if chosen:
            value[chosen] = float("-inf")
        best = int(value.argmax())
        chosen.append(best)
        nearest = torch.maximum(nearest, candidates @ candidates[best])
    return chosen


# ------------------------------------------------------------------------------------------ advice
def prototype_held_out(support: Tensor, labels: Tensor) -> list[int]:
    """Leave-one-out predictions of nearest-prototype on (n_support, d) features, in closed form: each
    item against its class mean without it (-1 for a class's only item). The self-check's cheap
    stand-in for large support sets, where one refit per item would take too long."""
    n_way = int(labels.max()) + 1
    sums = torch.zeros(n_way, support.shape[1]).index_add_(0, labels, support.float())
    counts = torch.bincount(labels, minlength=n_way).float()
    distances = torch.cdist(support.float(), sums / counts.clamp_min(1)[:, None]).pow(2)  # (n_support, n_way)
    own = counts[labels]
    without = (sums[labels] - support.float()) / (own - 1).clamp_min(1)[:, None]
    distances[torch.arange(len(labels)), labels] = (support.float() - without).pow(2).sum(dim=1)
    predicted = distances.argmin(dim=1)
    return [int(p) if o > 1 else -1 for p, o in zip(predicted, own)]


def suggest(support_features: Tensor, support_labels: Tensor, class_names: Sequence[str], held_out: Sequence[int],
            query_probabilities: Tensor | None = None, query_features: Tensor | None = None,
            n_queries: int = 5, rule: str = DEFAULT_RULE) -> Suggestions:
    """Ranked advice after a fit (see the module docstring).

    Args:
        support_features: (n_support, d) normalised frozen features of the support set.
        support_labels: (n_support,) labels in 0..n_way-1.
        class_names: the n_way names.
        held_out: per support item, its leave-one-out prediction (-1: not held out), as ``SelfCheck.predictions``.
        query_probabilities: (n_query, n_way), or None without queries.
        query_features: (n_query, d) normalised frozen features of the queries.
        n_queries: how many queries to suggest.
        rule: how queries are ranked (``pick``).
    """
    names = list(class_names)
    support = F.normalize(support_features.float(), dim=1)
    has_queries = query_probabilities is not None and query_features is not None and len(query_probabilities) > 0
    pairs = _confused_pairs(support, support_labels, names, held_out,
                            query_probabilities if has_queries else None)
    classes = _class_advice(support, support_labels, names)
    queries: list[QuerySuggestion] = []
    if has_queries:
        queries = _query_suggestions(query_probabilities, F.normalize(query_features.float(), dim=1), support, names,
                                     n_queries, rule)
    return Suggestions(pairs, classes, queries, rule)


def _confused_pairs(support: Tensor, labels: Tensor, names: list[str], held_out: Sequence[int],
                    query_probabilities: Tensor | None) -> list[ConfusedPair]:
    mistakes: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for index, predicted in enumerate(held_out):
        true = int(labels[index])
        if predicted < 0 or predicted == true:
            continue
        others = (labels == predicted).nonzero().flatten()
        cause = int(others[(support[others] @ support[index]).argmax()])
        mistakes.setdefault((true, predicted), []).append((index, cause))
    torn: dict[tuple[int, int], int] = {}
    if query_probabilities is not None:
        top = query_probabilities.topk(2, dim=1)
        for (first, second), margin in zip(top.indices.tolist(), margins(query_probabilities).tolist()):
            if margin < 0.3:
                # a torn query counts for the pair as the self-check found it, else as (predicted, runner-up)
                key = (second, first) if (second, first) in mistakes else (first, second)
                torn[key] = torn.get(key, 0) + 1
    keys = set(mistakes) | set(torn)
    pairs = [ConfusedPair(names[t], names[p], len(mistakes.get((t, p), [])), torn.get((t, p), 0),
                          mistakes.get((t, p), [])) for t, p in keys]
    return sorted(pairs, key=lambda pair: (-pair.mistakes, -pair.torn_queries, pair.true_class, pair.predicted_class))


def _class_advice(support: Tensor, labels: Tensor, names: list[str]) -> list[ClassAdvice]:
    counts = torch.bincount(labels, minlength=len(names)).tolist()
    spreads, outliers = [], []
    for label in range(len(names)):
        members = (labels == label).nonzero().flatten()
        prototype = F.normalize(support[members].mean(dim=0), dim=0)
        distance = 1 - support[members] @ prototype  # (n_members,)
        spreads.append(float(distance.mean()) if len(members) > 1 else 0.0)
        outliers.append(int(members[distance.argmax()]) if len(members) > 1 else None)
    most = max(counts)
    advice = []
    for label, name in enumerate(names):
        if counts[label] < FEW_EXAMPLES or counts[label] * 2 <= most:
            want = max(FEW_EXAMPLES, (most + 1) // 2 + 1) - counts[label]
            advice.append(ClassAdvice(name, "few", counts[label], spreads[label], outliers[label],
                                      f"{name} has {counts[label]} example(s): add {max(want, 1)} more"))
    multi = [s for s, c in zip(spreads, counts) if c > 1]
    if len(multi) >= 2:
        for label, name in enumerate(names):
            others = sorted(s for i, (s, c) in enumerate(zip(spreads, counts)) if c > 1 and i != label)
            median = others[len(others) // 2]
            if counts[label] > 1 and median > 0 and spreads[label] > SPREAD_FACTOR * median:
                advice.append(ClassAdvice(
                    name, "spread", counts[label], spreads[label], outliers[label],
                    f"{name}'s examples are {spreads[label] / median:.1f}x as spread out as the other classes': "
                    f"add a few more typical ones, or check its least typical example"))
    return sorted(advice, key=lambda a: (a.reason != "few", a.n_examples if a.reason == "few" else -a.spread))


def _query_suggestions(probabilities: Tensor, queries: Tensor, support: Tensor, names: list[str], n: int,
                       rule: str) -> list[QuerySuggestion]:
    if rule == "random":
        rule = "margin"  # the app never suggests at random
    order = pick(rule, probabilities, queries, support, n)
    top = probabilities.topk(min(2, probabilities.shape[1]), dim=1).indices
    margin = margins(probabilities)
    typical = typicality(queries, torch.cat([queries, support]))
    score = {"margin": -margin, "typical": typical}.get(rule, typical * (1 - margin))
    return [QuerySuggestion(i, names[int(top[i, 0])], names[int(top[i, 1])], float(margin[i]), float(typical[i]),
                            float(score[i])) for i in order]
