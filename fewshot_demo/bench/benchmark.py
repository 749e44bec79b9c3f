"""The benchmark: every method on the same episodes of one embedded pool, for each K-shot.

    summaries, notes = run_benchmark(pool, ["protonet", "linear"], n_way=5, n_shots=[1, 5], n_query=15,
                                     n_episodes=600, seed=0, device=device)
    print(format_table(summaries))

The episodes run in ``fewshot_demo.core.runner``; ``ms_per_episode`` is its ``fit`` +
``predict_proba`` time. ``python -m fewshot_demo.bench`` (``fewshot_demo.bench.cli``) runs it on a
folder or a text file.
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from fewshot_demo.bench.pools import EmbeddedPool
from fewshot_demo.core.evaluation import EvaluationSummary, paired_difference
from fewshot_demo.core.runner import run_episodes
from fewshot_demo.data.episodes import EpisodeConfig, eligible_classes, sample_episodes
from fewshot_demo.methods import LearnerContext, get_method


def run_benchmark(
    pool: EmbeddedPool,
    methods: Sequence[str],
    n_way: int,
    n_shots: Sequence[int],
    n_query: int,
    n_episodes: int,
    seed: int,
    device: torch.device,
    progress: bool = True,
    per_episode: dict[tuple[str, int], list[float]] | None = None,
) -> tuple[list[EvaluationSummary], list[str]]:
    """Evaluate every method on the same episodes for each n_shot; return summaries and notes.

    ``per_episode``, when given, receives {(method, n_shot): accuracy of each episode, in order},
    for paired comparisons.

    Raises:
        MethodNotApplicableError: for a method that cannot run on the pool's encoder (it says why).
    """
    notes = []
    summaries = []
    label_list = pool.labels.tolist()
    for n_shot in n_shots:
        config = EpisodeConfig(n_way=n_way, n_shot=n_shot, n_query=n_query)
        used = eligible_classes(label_list, n_shot + n_query)
        dropped = [pool.class_names[c] for c in sorted(set(label_list) - set(used))]
        if dropped:
            notes.append(
                f"{n_shot}-shot: left out {len(dropped)} class(es) with fewer than {n_shot + n_query} items: "
                + ", ".join(dropped)
            )
        episodes = sample_episodes(label_list, config, n_episodes, seed=seed)
        context = LearnerContext(pool.encoder_id, pool.feature_dim, device)
        for method in methods:
            spec = get_method(method)
            spec.check_applicable(pool.modality, pool.encoder_id)
            items = pool.prepare(spec.input_kind(pool.modality))
            bar = tqdm(total=len(episodes), desc=f"{method} {n_shot}-shot", disable=not progress, leave=False)
            run = run_episodes(method, items, episodes, context=context, on_episode=lambda _: bar.update(),
                               measure_memory=True)
            bar.close()
            summaries.append(run.summary())
            if per_episode is not None:
                per_episode[(method, n_shot)] = run.accuracies
    return summaries, notes


def paired_rows(per_episode: dict[tuple[str, int], list[float]], reference: str) -> list[dict]:
    """Each method's mean difference to ``reference`` on the same episodes, with its 95% CI."""
    rows = []
    for (method, n_shot), accuracies in per_episode.items():
        if method != reference and (reference, n_shot) in per_episode:
            difference, ci95 = paired_difference(accuracies, per_episode[(reference, n_shot)])
            rows.append({"method": method, "minus": reference, "n_shot": n_shot,
                         "difference": round(difference, 4), "ci95": round(ci95, 4)})
    return rows


def format_table(summaries: Sequence[EvaluationSummary]) -> str:
    """A plain-text table: method, shots, accuracy +- CI, ms per episode."""
    rows = [f"{'method':<16}{'shots':>6}{'episodes':>10}{'accuracy':>11}{'ci95':>9}{'ms/episode':>12}"]
    for s in summaries:
        rows.append(
            f"{s.method:<16}{s.n_shot:>6}{s.episodes:>10}{s.accuracy:>11.4f}{s.ci95:>9.4f}{s.ms_per_episode:>12.2f}"
        )
    return "\n".join(rows)
