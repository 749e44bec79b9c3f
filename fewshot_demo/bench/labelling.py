"""A simulated labelling loop: do the app's "what to add next" picks teach a classifier faster than random picks?

    python -m fewshot_demo.bench.labelling --data tuxpaint fashion_mnist bbc --episodes 200 --rounds 5 \\
        --rules margin typical typical_margin --png docs/labelling-loop.png --out labelling.json

The protocol, per episode (the same episodes, pools and test items for every rule: paired):

- ``n_way`` classes; one labelled example per class to start, ``n_test`` test items per class, and
  every other item of those classes in the unlabelled pool (so the pool is as unbalanced as the data).
- Each round the rule picks ``n_way`` items from the pool without seeing their classes (what
  ``fewshot_demo.core.suggestions.pick`` does with the current classifier's probabilities and the
  features); an oracle reveals their true classes and they join the support set. "random" picks
  ``n_way`` items uniformly from the same pool. A round adds as many items as there are classes, but
  not necessarily one of each: the picker does not know the classes of what it has not labelled.
- Accuracy on the test items is measured before the first round and after each.

Features are the built-in pools' (embedded once, cached on disk); the classifier is the app's
default for the modality (cosine ProtoNet for images, the linear probe for text).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from fewshot_demo.bench.builtin_pools import builtin_pool  # noqa: E402
from fewshot_demo.core.evaluation import mean_and_ci95, paired_difference  # noqa: E402
from fewshot_demo.core.suggestions import RULES, pick  # noqa: E402
from fewshot_demo.data.builtin import get_dataset  # noqa: E402
from fewshot_demo.data.episodes import EpisodeConfig, sample_episodes  # noqa: E402
from fewshot_demo.encoders.registry import default_encoder, default_method  # noqa: E402
from fewshot_demo.methods import LearnerContext, make_learner  # noqa: E402
from fewshot_demo.runtime.device import pick_device  # noqa: E402


@dataclass(frozen=True)
class LoopConfig:
    """One labelling loop's shape.

    Attributes:
        n_way: classes per episode.
        n_test: test items per class.
        min_pool: unlabelled items a class needs at least, to take part.
        rounds: rounds of picks after the start (n_way picks each).
        episodes: paired episodes.
        seed: the episodes' and the random picks' seed.
    """

    n_way: int = 5
    n_test: int = 5
    min_pool: int = 5
    rounds: int = 5
    episodes: int = 200
    seed: int = 0


@dataclass
class LoopResult:
    """Per rule, per episode, the accuracy at each round (round 0: one example per class)."""

    dataset: str
    encoder: str
    method: str
    config: LoopConfig
    accuracies: dict[str, list[list[float]]] = field(default_factory=dict)
    seconds: float = 0.0

    def curve(self, rule: str) -> list[tuple[float, float]]:
        """(mean, 95% CI half-width) of the accuracy per round."""
        runs = self.accuracies[rule]
        return [mean_and_ci95([run[r] for run in runs]) for r in range(len(runs[0]))]

    def difference(self, rule: str, baseline: str = "random") -> list[tuple[float, float]]:
        """Paired (mean, 95% CI) of rule minus baseline per round, over the same episodes."""
        a, b = self.accuracies[rule], self.accuracies[baseline]
        return [paired_difference([run[r] for run in a], [run[r] for run in b]) for r in range(len(a[0]))]

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "encoder": self.encoder, "method": self.method,
                "config": dict(vars(self.config)), "seconds": round(self.seconds, 2),
                "curves": {rule: self.curve(rule) for rule in self.accuracies},
                "vs_random": {rule: self.difference(rule) for rule in self.accuracies if rule != "random"}}


def episode_splits(labels: Tensor, config: LoopConfig) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Per episode (start indices, test indices, pool indices, pool-to-episode label map as a (n_items,) tensor).

    Sampled by the one episode sampler: the start is its support, the test items the first
    ``n_test`` of its queries per class, the pool every other item of the episode's classes.
    """
    sampled = sample_episodes(labels.tolist(), EpisodeConfig(config.n_way, 1, config.n_test + config.min_pool),
                              config.episodes, seed=config.seed)
    splits = []
    for episode in sampled:
        episode_label = torch.full_like(labels, -1)
        for position, class_id in enumerate(episode.class_ids):
            episode_label[labels == class_id] = position
        queries = episode.query_indices.view(config.n_way, -1)[:, : config.n_test].flatten()
        taken = torch.zeros_like(labels, dtype=torch.bool)
        taken[episode.support_indices] = True
        taken[queries] = True
        pool = ((episode_label >= 0) & ~taken).nonzero().flatten()
        splits.append((episode.support_indices, queries, pool, episode_label))
    return splits


def run_loop(features: Tensor, labels: Tensor, method: str, encoder_id: str, rules: Sequence[str],
             config: LoopConfig, dataset: str = "") -> LoopResult:
    """Every rule (and "random") on the same episodes; see the module docstring."""
    rules = list(dict.fromkeys([*rules, "random"]))
    context = LearnerContext(encoder_id, int(features.shape[1]), features.device)
    result = LoopResult(dataset, encoder_id, method, config, {rule: [] for rule in rules})
    began = time.perf_counter()
    for number, (start, test, pool, episode_label) in enumerate(episode_splits(labels, config)):
        for rule in rules:
            generator = torch.Generator().manual_seed(config.seed * 100_003 + number)  # same for every rule
            result.accuracies[rule].append(
                _one_loop(features, episode_label, start, test, pool, method, context, rule, config, generator))
    result.seconds = time.perf_counter() - began
    return result


def _one_loop(features: Tensor, episode_label: Tensor, start: Tensor, test: Tensor, pool: Tensor, method: str,
              context: LearnerContext, rule: str, config: LoopConfig, generator: torch.Generator) -> list[float]:
    labelled, remaining, accuracy = start, pool, []
    test_labels = episode_label[test]
    for round_number in range(config.rounds + 1):
        learner = make_learner(method, context).fit(features[labelled], episode_label[labelled])
        accuracy.append(float((learner.predict(features[test]) == test_labels).float().mean()))
        if round_number == config.rounds or not len(remaining):
            continue
        probabilities = learner.predict_proba(features[remaining])  # (n_candidates, n_way)
        chosen = torch.tensor(pick(rule, probabilities, features[remaining], features[labelled], config.n_way,
                                   generator))
        labelled = torch.cat([labelled, remaining[chosen]])
        keep = torch.ones(len(remaining), dtype=torch.bool)
        keep[chosen] = False
        remaining = remaining[keep]
    return accuracy


# ------------------------------------------------------------------------------------------ output
def format_result(result: LoopResult) -> str:
    """A markdown table: accuracy per round per rule with 95% CIs, and each rule minus random, paired."""
    rules = list(result.accuracies)
    rounds = len(result.accuracies[rules[0]][0])
    head = "| rule | " + " | ".join(f"round {r} ({result.config.n_way * (1 + r)} labelled)"
                                    for r in range(rounds)) + " |"
    lines = [f"**{result.dataset}** ({result.encoder}, {result.method}, {result.config.n_way}-way, "
             f"{len(result.accuracies[rules[0]])} paired episodes, {result.config.n_test} test items per class)", "",
             head, "|---" * (rounds + 1) + "|"]
    for rule in rules:
        lines.append(f"| {rule} | " + " | ".join(f"{m:.3f} ± {c:.3f}" for m, c in result.curve(rule)) + " |")
    for rule in rules:
        if rule != "random":
            lines.append(f"| {rule} − random | "
                         + " | ".join(f"{m:+.3f} ± {c:.3f}" for m, c in result.difference(rule)) + " |")
    return "\n".join(lines)


def plot_results(results: Sequence[dict], path: Path) -> Path:
    """Accuracy per round with 95% CIs (top), each rule minus random, paired (bottom); one column per data
    set. ``results`` are ``LoopResult.to_dict()``s (what ``--out`` writes)."""
    figure, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 6.4), squeeze=False)
    for column, result in enumerate(results):
        config = result["config"]
        labelled = [config["n_way"] * (1 + r) for r in range(config["rounds"] + 1)]
        for rule, curve in result["curves"].items():
            mean, ci = zip(*curve)
            axes[0][column].errorbar(labelled, mean, yerr=ci, label=rule, capsize=3, marker="o", markersize=3)
        for rule, curve in result["vs_random"].items():
            mean, ci = zip(*curve)
            axes[1][column].errorbar(labelled, mean, yerr=ci, label=rule, capsize=3, marker="o", markersize=3)
        axes[0][column].set_title(f"{result['dataset']} ({result['method']}, {config['n_way']}-way)")
        axes[0][column].set_ylabel("test accuracy")
        axes[1][column].axhline(0, color="grey", linewidth=0.8)
        axes[1][column].set_ylabel("minus random (paired)")
        axes[1][column].set_xlabel("labelled items")
    axes[0][0].legend(fontsize=8)
    axes[1][0].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fewshot_demo.bench.labelling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["tuxpaint", "fashion_mnist", "bbc"], help="built-in data set ids")
    parser.add_argument("--rules", nargs="+", default=["margin", "typical", "typical_margin"],
                        choices=[r for r in RULES if r != "random"], help="random always runs as the control")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--n-test", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--png", type=Path, default=None, help="plot the curves here")
    parser.add_argument("--out", type=Path, default=None, help="write the curves as JSON here")
    parser.add_argument("--plot-only", nargs="+", type=Path, default=None, metavar="JSON",
                        help="only plot curves written by --out (one or more files) to --png")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.plot_only:
        rows = [row for path in args.plot_only for row in json.loads(path.read_text())]
        print(f"plot: {plot_results(rows, args.png or Path('labelling-loop.png'))}")
        return 0
    torch.set_num_threads(1)  # small matrices: one thread is faster than several fighting over the cores
    device = pick_device(args.device)
    config = LoopConfig(args.n_way, args.n_test, 5, args.rounds, args.episodes, args.seed)
    results = []
    for dataset in args.data:
        modality = get_dataset(dataset).modality
        encoder_id, method = default_encoder(modality), default_method(modality)
        began = time.perf_counter()
        pool = builtin_pool(dataset, encoder_id, device)
        embed_seconds = time.perf_counter() - began
        result = run_loop(pool.prepare("features"), pool.labels, method, encoder_id, args.rules, config, dataset)
        results.append(result)
        print(format_result(result))
        print(f"\n({embed_seconds:.1f} s to read the features, {result.seconds:.1f} s for the loops)\n", flush=True)
    if args.png:
        print(f"plot: {plot_results([r.to_dict() for r in results], args.png)}")
    if args.out:
        args.out.write_text(json.dumps([r.to_dict() for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
