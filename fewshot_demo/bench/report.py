"""The results table of the README, produced by one command that anyone can re-run.

    python -m fewshot_demo.bench.report --out docs/results.md --episodes 100 --shots 1 5

Runs every comparison method (``bench.comparison.compared_methods()``) on every installed built-in data set,
on identical episodes per data set and K-shot, and writes a Markdown table per data set
(accuracy ± 95% CI and ms per episode, per method and K-shot) with the date, device and versions.
Data sets that are not installed are listed with their install command; methods that cannot run
on a data set (no meta-trained checkpoint for its encoder, ...) are listed with the reason, and
methods that failed while running with their error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from fewshot_demo.bench.compare_run import run_comparison
from fewshot_demo.bench.comparison import (
    ComparisonConfig,
    ComparisonData,
    compared_methods,
    method_label,
)
from fewshot_demo.bench.exports import results_json, versions
from fewshot_demo.bench.results import ComparisonUpdate, NotRun
from fewshot_demo.config.errors import CheckpointMissingError, UserInputError
from fewshot_demo.data.builtin import BUILTIN_DATASETS
from fewshot_demo.data.splits import TRACKS
from fewshot_demo.runtime.device import pick_device

#: Methods left out of the default run for a modality, with the reason (override with --methods).
SLOW_BY_MODALITY = {
    "text": {"finetune": "text fine-tuning (SetFit-style) takes a few seconds per episode for short texts on a CPU and ~30 s for news articles"},
}


def methods_for(modality: str, requested: Sequence[str] | None) -> tuple[tuple[str, ...], list[str]]:
    """The methods to run on a modality, and notes on the ones left out by default."""
    if requested:
        return tuple(requested), []
    slow = SLOW_BY_MODALITY.get(modality, {})
    notes = [f"{m} not run by default: {reason} (add --methods to include it)" for m, reason in slow.items()]
    return tuple(m for m in compared_methods() if m not in slow), notes


def skipped_notes(not_run: Sequence[NotRun], encoder_id: str) -> list[str]:
    """One line for the methods without a meta-trained checkpoint, one per other reason a method was
    skipped, and one per method that failed while running."""
    missing = [n for n in not_run if issubclass(n.error, CheckpointMissingError)]
    no_checkpoint = list(dict.fromkeys(n.method for n in missing))
    others = [f"not run: {text}" for text in dict.fromkeys(str(n) for n in not_run if not n.failed and n not in missing)]
    others += [f"failed: {text}" for text in dict.fromkeys(
        f"{n.method} ({n.error.__name__}): {n.reason}" for n in not_run if n.failed)]
    if no_checkpoint:
        remedy = (f"`python -m fewshot_demo.train --method METHOD --backbone {encoder_id}` makes one" if encoder_id in TRACKS
                  else f"meta-training covers the {' and '.join(TRACKS)} backbones")
        others.insert(0, f"not run: {', '.join(no_checkpoint)} (no meta-trained checkpoint for {encoder_id}; {remedy})")
    return others


def markdown_table(update: ComparisonUpdate, shots: Sequence[int], methods: Sequence[str]) -> str:
    """Rows: methods; columns: accuracy ± CI and ms/episode per K-shot."""
    by_key = {(r.method, r.n_shot): r for r in update.results}
    encoders = {r.method: r.encoder_id for r in update.results}
    header = "| method | family | encoder | " + " | ".join(f"{k}-shot accuracy | {k}-shot ms/episode" for k in shots) + " |"
    rule = "|---|---|---|" + "---:|---:|" * len(shots)
    rows = [header, rule]
    for method in methods:
        found = [by_key.get((method, k)) for k in shots]
        if not any(found):
            continue
        first = next(r for r in found if r is not None)
        cells = []
        for r in found:
            cells += (["-", "-"] if r is None else
                      [f"{100 * r.summary.accuracy:.1f} ± {100 * r.summary.ci95:.1f}", f"{r.summary.ms_per_episode:.1f}"])
        rows.append(f"| {method_label(method)} | {first.family} | {encoders[method]} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fewshot_demo.bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"), help="Markdown file to write")
    parser.add_argument("--json", type=Path, default=None, help="also write every result as JSON here")
    parser.add_argument("--datasets", nargs="+", default=list(BUILTIN_DATASETS), help=f"built-in ids: {', '.join(BUILTIN_DATASETS)}")
    parser.add_argument("--methods", nargs="+", default=None, help="method names (default: all compared methods)")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: FEWSHOT_DEVICE, else auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = pick_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        unknown = [d for d in args.datasets if d not in BUILTIN_DATASETS]
        if unknown:
            raise UserInputError(f"unknown data set(s) {', '.join(unknown)}; choose from {', '.join(BUILTIN_DATASETS)}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    command = "python -m fewshot_demo.bench.report " + " ".join(argv if argv is not None else sys.argv[1:])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    threads = torch.get_num_threads()
    device_text = str(device) if device.type != "cpu" else f"cpu ({threads} thread{'s' if threads > 1 else ''}, {platform.machine()})"
    sections = [
        "Accuracy ± 95% CI (1.96 x std / sqrt(episodes), in points) and fit + predict time per episode on cached "
        f"features; {args.n_way}-way, {args.episodes} episodes per K-shot, the same episodes for every method (seed {args.seed}).",
        f"Produced by `{command.strip()}` on {stamp}; device: {device_text}; versions: "
        + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
    ]
    dumps = []
    for dataset_id in args.datasets:
        spec = BUILTIN_DATASETS[dataset_id]
        if not spec.is_installed():
            sections.append(f"### {spec.label}\n\nNot installed: `{spec.install}`.")
            continue
        methods, notes = methods_for(spec.modality, args.methods)
        config = ComparisonConfig(n_way=args.n_way, n_shots=tuple(args.shots), n_episodes=args.episodes,
                                  methods=methods, seed=args.seed)
        try:
            data = ComparisonData.from_builtin(dataset_id, device)
            for update in run_comparison(data, config):
                if update.kind in ("result", "skipped", "failed", "status"):
                    print(f"[{time.perf_counter() - started:6.0f} s] {dataset_id}: {update.message}", file=sys.stderr)
        except ValueError as error:
            sections.append(f"### {spec.label}\n\nCould not run: {error}")
            continue
        dumps.append(results_json(data, config, update))
        query = update.results[0].n_query if update.results else "-"
        lines = [f"### {spec.label}", "", f"{len(data.data.items)} items, {query} queries per class. {spec.description}", "",
                 markdown_table(update, args.shots, methods)]
        extra = notes + skipped_notes(update.not_run, data.encoder) + list(data.data.notes)
        if extra:
            lines += [""] + [f"- {n}" for n in extra]
        sections.append("\n".join(lines))
    text = "## Results\n\n" + "\n\n".join(sections) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.json is not None:
        args.json.write_text(json.dumps(dumps, indent=2) + "\n")
    print(text)
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
