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
from typing import Any, Sequence

import torch

from fewshot_demo.bench.benchmark import format_table, paired_rows, run_benchmark
from fewshot_demo.bench.pools import EmbeddedPool, embed_pool
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import settings
from fewshot_demo.config.version import __version__
from fewshot_demo.core.evaluation import EvaluationSummary
from fewshot_demo.data.labelled import read_image_folder, read_text_file
from fewshot_demo.encoders.backbones import BACKBONES
from fewshot_demo.encoders.registry import default_encoder, get_encoder
from fewshot_demo.methods import available_methods
from fewshot_demo.runtime.device import pick_device

TEXT_SUFFIXES = {".csv", ".tsv", ".jsonl"}


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


def _check(args: argparse.Namespace) -> None:
    """Refuse unknown methods and a --paired-with outside --methods, before anything is read."""
    unknown = [m for m in args.methods if m not in available_methods()]
    if unknown:
        raise UserInputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(available_methods())}")
    if args.paired_with is not None and args.paired_with not in args.methods:
        raise UserInputError(f"--paired-with {args.paired_with} must be one of --methods")


def load_pool(data: Path, backbone: str, encoder: str, device: torch.device) -> EmbeddedPool:
    """Read and embed ``data``: a folder of class sub-folders with ``backbone``, a text file with ``encoder``.

    Raises:
        UserInputError: for a path that is neither, or unusable contents.
    """
    if data.is_dir():
        return embed_pool(read_image_folder(data, progress=True), backbone, device, progress=True)
    if data.suffix.lower() in TEXT_SUFFIXES and data.is_file():
        return embed_pool(read_text_file(data), encoder, device)
    raise UserInputError(f"{data} is neither a folder of class sub-folders nor a .csv/.tsv/.jsonl file")


def bench_json(args: argparse.Namespace, pool: EmbeddedPool, device: torch.device, notes: list[str],
            summaries: Sequence[EvaluationSummary], per_episode: dict[tuple[str, int], list[float]]) -> dict[str, Any]:
    """The JSON that ``--out`` writes."""
    result = {
        "modality": pool.modality,
        get_encoder(pool.encoder_id, device).role: pool.encoder_id,  # "backbone" or "encoder"
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
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check(args)
        device = pick_device(args.device)
        # Episodes are many small problems: one intra-op thread is faster than two on a small or
        # shared CPU, as in the app (see device.one_thread). FEWSHOT_TORCH_THREADS overrides it.
        torch.set_num_threads(settings().torch_threads)
        torch.manual_seed(args.seed)
        pool = load_pool(args.data, args.backbone, args.encoder, device)
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
    result = bench_json(args, pool, device, notes, summaries, per_episode)
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
