"""Benchmark learners on episodes sampled from your own data.

    python -m fewshot_demo.bench --data PATH --n-way 5 --n-shot 1 5 --n-query 15 --episodes 600 \\
        --methods protonet linear --seed 0 --out results.json

PATH is a folder with one sub-folder of images per class, or a CSV/TSV/JSONL file with ``text`` and
``label`` columns. Every method sees the same episodes, and every item is embedded once and reused
by all methods and shots. The episodes run in ``fewshot_demo.core.runner``; ``ms_per_episode`` is its
``fit`` + ``predict_proba`` time.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import settings
from fewshot_demo.config.version import __version__
from fewshot_demo.core.evaluation import EvaluationSummary
from fewshot_demo.core.runner import run_episodes
from fewshot_demo.data.episodes import EpisodeConfig, eligible_classes, sample_episodes
from fewshot_demo.data.pools import (
    EmbeddedPool,
    embed_pool,
    read_image_folder,
    read_text_file,
)
from fewshot_demo.encoders.backbones import BACKBONES
from fewshot_demo.encoders.registry import default_encoder
from fewshot_demo.methods import LearnerContext, available_methods, get_method
from fewshot_demo.runtime.device import pick_device

TEXT_SUFFIXES = {".csv", ".tsv", ".jsonl"}


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
    from fewshot_demo.core.evaluation import paired_difference

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fewshot_demo.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="image folder (one sub-folder per class) or text,label CSV/TSV/JSONL")
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--n-shot", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--n-query", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--methods", nargs="+", default=["protonet", "linear"], help="registered method names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default=default_encoder("image"), help=f"image backbone: {', '.join(BACKBONES)}")
    parser.add_argument("--encoder", default=default_encoder("text"), help="text encoder id (text data only)")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: FEWSHOT_DEVICE, else auto)")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    parser.add_argument("--paired-with", default=None, metavar="METHOD",
                        help="also print each method's paired difference to METHOD on the same episodes")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        unknown = [m for m in args.methods if m not in available_methods()]
        if unknown:
            raise UserInputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(available_methods())}")
        if args.paired_with is not None and args.paired_with not in args.methods:
            raise UserInputError(f"--paired-with {args.paired_with} must be one of --methods")
        device = pick_device(args.device)
        # Episodes are many small problems: one intra-op thread is faster than two on a small or
        # shared CPU, as in the app (see device.one_thread). FEWSHOT_TORCH_THREADS overrides it.
        torch.set_num_threads(settings().torch_threads)
        torch.manual_seed(args.seed)
        if args.data.is_dir():
            pool = embed_pool(read_image_folder(args.data, progress=True), args.backbone, device, progress=True)
        elif args.data.suffix.lower() in TEXT_SUFFIXES and args.data.is_file():
            pool = embed_pool(read_text_file(args.data), args.encoder, device)
        else:
            raise UserInputError(f"{args.data} is neither a folder of class sub-folders nor a .csv/.tsv/.jsonl file")
        per_episode: dict[tuple[str, int], list[float]] = {}
        summaries, notes = run_benchmark(
            pool, args.methods, args.n_way, args.n_shot, args.n_query, args.episodes, args.seed, device,
            progress=not args.no_progress, per_episode=per_episode,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in pool.notes + notes:
        print(f"note: {note}", file=sys.stderr)
    result = {
        "modality": pool.modality,
        ("backbone" if pool.modality == "image" else "encoder"): pool.encoder_id,
        "device": str(device),
        "n_way": args.n_way,
        "n_query": args.n_query,
        "seed": args.seed,
        "embed_ms_per_item": round(pool.embed_ms_per_item, 3),
        "items": len(pool.labels),
        "classes": len(pool.class_names),
        "notes": pool.notes + notes,
        "versions": {"fewshot_demo": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "results": [s.to_dict() for s in summaries],
    }
    if args.paired_with is not None:
        result["paired"] = paired_rows(per_episode, args.paired_with)
    print(f"{pool.modality} data: {len(pool.labels)} items in {len(pool.class_names)} classes; "
          f"{pool.encoder_id} on {device}, {pool.embed_ms_per_item:.1f} ms/item to embed")
    print(format_table(summaries))
    for row in result.get("paired", []):
        print(f"{row['n_shot']}-shot {row['method']} - {row['minus']}: {100 * row['difference']:+.2f} "
              f"+- {100 * row['ci95']:.2f} points")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
