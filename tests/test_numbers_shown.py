"""The numbers as the app writes them out: the prediction cards, the self-check's reading and table, and
the paired differences of the comparison's reading and the bench, each against a value worked out here.

Imports from the UI and bench modules where they are today (``fewshot_demo.ui.cards``,
``fewshot_demo.bench.reading``, ``fewshot_demo.bench.results``, ``fewshot_demo.bench.benchmark``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

from fewshot_demo.bench.benchmark import paired_rows
from fewshot_demo.bench.reading import reading
from fewshot_demo.bench.results import MethodResult
from fewshot_demo.core.classifier import Prediction, SelfCheck
from fewshot_demo.core.evaluation import (
    EvaluationSummary,
    mean_and_ci95,
    paired_difference,
)
from fewshot_demo.ui.cards import (
    confusion_table,
    prediction_cards_html,
    self_check_markdown,
)

NAMES = ["apple", "bread", "cheese"]


def _prediction() -> Prediction:
    return Prediction(
        label="bread",
        probabilities={"apple": 0.2504, "bread": 0.7, "cheese": 0.0496},
        prototype_distances={"apple": 0.8, "bread": 0.25, "cheese": 1.9},
        nearest=[(2, 0.934), (0, 0.51)],
    )


# ------------------------------------------------------------------------------------ prediction cards
def test_a_card_shows_the_probabilities_best_first_and_the_distances_nearest_first():
    html = prediction_cards_html([_prediction()], ["q.jpg"], [None], ["a1", "a2", "b1"])
    probabilities = re.findall(r'<span class="n">(\w+)</span><div class="fs-track">.*?<span class="p">([\d.]+%)</span>',
                               html)
    assert probabilities == [("bread", "70.0%"), ("apple", "25.0%"), ("cheese", "5.0%")]
    assert 'style="width:70%"' in html and 'style="width:25%"' in html
    distances = re.findall(r'<span class="n">(\w+)</span><span class="p">([\d.]+)</span>', html)
    assert distances == [("bread", "0.250"), ("apple", "0.800"), ("cheese", "1.900")]
    assert re.findall(r"<figcaption>(\w+)<br>cos ([\d.]+)</figcaption>", html) == [("b1", "0.93"), ("a1", "0.51")]
    assert 'bread <span class="fs-small">70%</span>' in html


def test_a_wrong_card_says_how_likely_the_true_class_was():
    html = prediction_cards_html([_prediction()], ["q.jpg"], [None], ["a1", "a2", "b1"], truths=["apple"])
    assert 'data-correct="false"' in html and "apple got 25%." in html


# ------------------------------------------------------------------------------------ self-check
def _check() -> SelfCheck:
    confusion = np.array([[2, 1, 0], [0, 3, 0], [0, 0, 0]])
    return SelfCheck(accuracy=5 / 6, per_class={"apple": 2 / 3, "bread": 1.0, "cheese": None}, confusion=confusion,
                     predictions=[0, 0, 1, 1, 1, 1, -1], confused_pairs=[("apple", "bread", 1)])


def test_the_self_check_reading_gives_the_held_out_accuracy_and_the_weak_classes():
    text = self_check_markdown(_check(), NAMES)
    assert "83% correct" in text  # 5 of the 6 held-out items
    assert "Classes with mistakes: apple (67%)." in text
    assert "1 example(s) of **apple** look more like **bread**" in text
    assert "Not checked (only one example): cheese." in text


def test_the_confusion_table_rows_are_the_true_classes():
    assert confusion_table(_check(), NAMES) == [["apple", 2, 1, 0], ["bread", 0, 3, 0], ["cheese", 0, 0, 0]]


# ------------------------------------------------------------------------------------ intervals and paired differences
def test_the_interval_is_1_96_population_standard_errors():
    values = [0.2, 0.6, 0.7, 0.9, 1.0]
    mean, ci = mean_and_ci95(values)
    assert mean == pytest.approx(np.mean(values)) and ci == pytest.approx(1.96 * np.std(values) / math.sqrt(5))


def test_a_paired_difference_is_first_minus_second_with_the_interval_of_the_differences():
    a, b = [0.9, 0.6, 0.8, 0.7], [0.7, 0.6, 0.5, 0.7]
    mean, ci = paired_difference(a, b)
    differences = np.subtract(a, b)
    assert mean == pytest.approx(0.125)
    assert ci == pytest.approx(1.96 * differences.std() / 2)


def _result(method: str, accuracies: list[float], n_shot: int = 5) -> MethodResult:
    accuracy, ci95 = mean_and_ci95(accuracies)
    summary = EvaluationSummary(method, n_shot, len(accuracies), accuracy, ci95, 1.0)
    return MethodResult(summary, "efficientnet_lite0", 5, accuracies, np.zeros((5, 5), dtype=np.int64), Counter(), "e")


def test_the_comparisons_reading_gives_the_winners_paired_lead():
    linear = _result("linear", [0.9, 0.8, 1.0, 0.7, 0.9])
    maml = _result("maml", [0.8, 0.8, 0.9, 0.6, 0.7])
    text = reading([linear.summary, maml.summary], [linear, maml])
    mean, ci = paired_difference(linear.episode_accuracies, maml.episode_accuracies)
    assert mean == pytest.approx(0.1)
    assert f"paired difference is +{100 * mean:.1f} ± {100 * ci:.1f} points" in text
    assert "+10.0 ± " in text and "a real difference" in text


def test_the_benchs_paired_rows_are_each_method_minus_the_reference():
    per_episode = {("linear", 1): [0.9, 0.8, 1.0], ("protonet", 1): [0.8, 0.8, 0.7], ("maml", 5): [0.5, 0.5, 0.5]}
    rows = paired_rows(per_episode, "protonet")
    differences = np.subtract([0.9, 0.8, 1.0], [0.8, 0.8, 0.7])
    assert rows == [{"method": "linear", "minus": "protonet", "n_shot": 1,
                     "difference": round(float(differences.mean()), 4),
                     "ci95": round(float(1.96 * differences.std() / math.sqrt(3)), 4)}]
