"""Our text methods next to two outside peers, on exactly the bench's episodes.

    python -m fewshot_demo.text.peers --data bbc --n-shot 1 5 8 --episodes 200 --setfit-episodes 20
    python -m fewshot_demo.text.peers merge run-a.json run-b.json --out merged.json

The peers, on the same encoder and the same episodes:

- ``sklearn_lr``: scikit-learn's ``LogisticRegression`` (its defaults, ``max_iter=1000``) on the
  frozen sentence embeddings (the encoder's own pooling, e.g. ``minilm``);
- ``setfit``: the ``setfit`` package (Tunstall et al. 2022), one epoch, batch size 16, its model body
  loaded from the same encoder folder, then its logistic-regression head.

Our methods are named ``method@encoder_id`` (``linear@minilm:layers``: the linear probe on the
last-and-middle-layer features); each runs in ``fewshot_demo.core.runner`` and is fed what its
``input_kind`` asks for, as in the bench. Frozen-feature methods and ``sklearn_lr`` run on
``--episodes`` episodes; methods that fine-tune the encoder and SetFit, slower, on the first
``--setfit-episodes`` episodes (or those from ``--slow-from``).
Every row reports accuracy +- 95% CI and the mean training seconds (``fit`` only, after embedding:
the runner's ``fit_seconds``; for SetFit ``trainer.train()``: pair fine-tune and head), and every
one of our methods gets its paired difference to each peer, over the episodes both ran. Episodes are
drawn as by ``fewshot_demo.bench`` (same seed, same sampler, classes in order of first appearance),
so ``--data bbc`` gives the episodes of ``python -m fewshot_demo.bench --data bbc.csv`` with the CSV
written by ``python -m fewshot_demo.data.texts bbc bbc.csv``. One torch thread unless
FEWSHOT_TORCH_THREADS says otherwise.

SetFit on long texts takes minutes per episode, so its episodes can be split: ``--episodes 0
--slow-from 8 --setfit-episodes 8`` runs episodes 8-15 (SetFit seeded with each episode's index, as in
one long run), and ``merge`` joins the ``--out`` files of consecutive ranges and pairs them again.

scikit-learn and setfit are optional: without them their rows are skipped with a note naming the
``pip install`` that adds them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import settings
from fewshot_demo.core import evaluation
from fewshot_demo.core.evaluation import mean_and_ci95
from fewshot_demo.core.runner import run_episodes
from fewshot_demo.data.episodes import (
    Episode,
    EpisodeConfig,
    remap_labels,
    sample_episodes,
)
from fewshot_demo.methods import LearnerContext, available_methods, get_method

DEFAULT_METHODS = ("linear@minilm", "linear@minilm:layers", "finetune@minilm:layers")
PEERS = ("sklearn_lr", "setfit")
#: Methods whose inputs are tokens (they fine-tune the encoder): run on the SetFit episode budget.
SLOW_KINDS = ("tokens",)


@dataclass
class PeerRow:
    """One method at one shot count: per-episode accuracies and training seconds."""

    method: str
    encoder: str
    n_shot: int
    accuracies: list[float] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    first_episode: int = 0  # accuracies[i] is episode first_episode + i of the seed's sequence

    @property
    def end_episode(self) -> int:
        return self.first_episode + len(self.accuracies)

    def summary(self) -> dict:
        accuracy, ci95 = mean_and_ci95(self.accuracies)
        return {
            "method": self.method, "encoder": self.encoder, "n_shot": self.n_shot, "episodes": len(self.accuracies),
            "accuracy": round(accuracy, 4), "ci95": round(ci95, 4),
            "train_s": round(sum(self.train_seconds) / len(self.train_seconds), 4),
            # kept so that runs over different episodes can be merged and paired later (``merge``)
            "first_episode": self.first_episode,
            "per_episode": [round(accuracy, 4) for accuracy in self.accuracies],
            "per_episode_train_s": [round(seconds, 4) for seconds in self.train_seconds],
        }

    @classmethod
    def from_summary(cls, summary: dict) -> "PeerRow":
        """Rebuild a row from its ``summary`` (as written by ``--out``)."""
        accuracies = list(summary["per_episode"])
        seconds = summary.get("per_episode_train_s") or [summary["train_s"]] * len(accuracies)
        return cls(summary["method"], summary["encoder"], summary["n_shot"], accuracies, list(seconds),
                   summary.get("first_episode", 0))


def _overlap(ours: PeerRow, peer: PeerRow) -> tuple[slice, slice, int]:
    """Slices of each row's lists covering the episodes both ran, and how many there are."""
    first, end = max(ours.first_episode, peer.first_episode), min(ours.end_episode, peer.end_episode)
    n = max(0, end - first)
    return (slice(first - ours.first_episode, first - ours.first_episode + n),
            slice(first - peer.first_episode, first - peer.first_episode + n), n)


def paired_difference(ours: PeerRow, peer: PeerRow) -> dict | None:
    """Mean and 95% CI of (ours - peer) accuracy over the episodes both ran; None when they share none."""
    mine, theirs, n = _overlap(ours, peer)
    if n == 0:
        return None
    mean, ci95 = evaluation.paired_difference(ours.accuracies[mine], peer.accuracies[theirs])
    return {"method": ours.method, "peer": peer.method, "n_shot": ours.n_shot, "episodes": n,
            "difference": round(mean, 4), "ci95": round(ci95, 4)}


def merge_rows(rows: Sequence[PeerRow]) -> list[PeerRow]:
    """Join rows of one method and shot count that ran consecutive episode ranges into one row each.

    Raises:
        UserInputError: when two ranges of one method overlap or leave a gap (the merged row would not be
            the episodes it claims to be).
    """
    groups: dict[tuple[str, int], list[PeerRow]] = {}
    for row in rows:
        groups.setdefault((row.method, row.n_shot), []).append(row)
    merged = []
    for (method, n_shot), parts in groups.items():
        parts = sorted(parts, key=lambda row: row.first_episode)
        joined = PeerRow(method, parts[0].encoder, n_shot, first_episode=parts[0].first_episode)
        for part in parts:
            if part.first_episode != joined.end_episode:
                raise UserInputError(
                    f"{method} at {n_shot} shots: episodes {part.first_episode}-{part.end_episode - 1} do not follow "
                    f"episodes {joined.first_episode}-{joined.end_episode - 1}; merge runs of consecutive ranges "
                    "(--slow-from)"
                )
            joined.accuracies += part.accuracies
            joined.train_seconds += part.train_seconds
        merged.append(joined)
    return merged


def load_corpus(data: str) -> tuple[list[str], list[str], list[str]]:
    """Texts, labels and notes of an installed corpus ("bbc", "chatterbot") or a CSV/TSV/JSONL file."""
    from fewshot_demo.data.texts import BENCHMARK_CORPORA, read_text_table

    table = BENCHMARK_CORPORA[data]() if data in BENCHMARK_CORPORA else read_text_table(Path(data))
    return table.texts, table.labels, list(table.notes)


def split_method(spec: str) -> tuple[str, str]:
    """``"linear@minilm:layers"`` -> ("linear", "minilm:layers"); no ``@`` means the plain ``minilm``."""
    method, _, encoder_id = spec.partition("@")
    return method, encoder_id or "minilm"


def _sklearn_lr() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, float]]:
    from sklearn.linear_model import LogisticRegression

    def run(support: torch.Tensor, labels: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, float]:
        began = time.perf_counter()
        model = LogisticRegression(max_iter=1000).fit(support.numpy(), labels.numpy())
        seconds = time.perf_counter() - began
        return torch.as_tensor(model.predict(query.numpy())), seconds

    return run


def _setfit(model_source: str) -> Callable[[list[str], list[int], list[str], int], tuple[torch.Tensor, float]]:
    import datasets
    import transformers
    from setfit import SetFitModel, Trainer, TrainingArguments

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("setfit").setLevel(logging.ERROR)  # "model_head.pkl not found": expected, the head is trained

    def run(support: list[str], labels: list[int], query: list[str], seed: int) -> tuple[torch.Tensor, float]:
        model = SetFitModel.from_pretrained(model_source)
        arguments = TrainingArguments(
            num_epochs=1, batch_size=16, seed=seed, report_to="none", show_progress_bar=False, save_strategy="no"
        )
        trainer = Trainer(
            model=model, args=arguments, train_dataset=datasets.Dataset.from_dict({"text": support, "label": labels})
        )
        with contextlib.redirect_stdout(io.StringIO()):  # the trainer prints its log lines
            began = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - began
        return torch.as_tensor(model.predict(query)).long(), seconds

    return run


def run_peers(
    texts: Sequence[str],
    names: Sequence[str],
    methods: Sequence[str],
    n_shots: Sequence[int],
    n_way: int = 5,
    n_query: int = 15,
    n_episodes: int = 200,
    n_slow_episodes: int = 20,
    slow_from: int = 0,
    seed: int = 0,
    peer_encoder: str = "minilm",
    device: torch.device | str = "cpu",
    peer_names: Sequence[str] = PEERS,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[list[PeerRow], list[str]]:
    """Run our methods and the peers on the same episodes; return the rows and notes.

    Frozen-feature methods and ``sklearn_lr`` run on episodes ``0 .. n_episodes - 1``; fine-tuning
    methods and SetFit on ``slow_from .. slow_from + n_slow_episodes - 1`` (SetFit seeded with the
    episode's index), so a long SetFit run can be split over processes and joined with ``merge``.

    Raises:
        UserInputError: for an unknown method, or too few classes with enough texts.
    """
    from fewshot_demo.encoders.text import load_encoder, parse_encoder_id

    device = torch.device(device)
    parsed = [split_method(spec) for spec in methods]
    unknown = [method for method, _ in parsed if method not in available_methods()]
    if unknown:
        raise UserInputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(available_methods())}")
    if slow_from < 0:
        raise UserInputError(f"--slow-from must be 0 or more (the index of an episode), not {slow_from}")
    notes: list[str] = []
    unknown = [name for name in peer_names if name not in PEERS]
    if unknown:
        raise UserInputError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    peers: dict[str, Callable] = {}
    if "sklearn_lr" in peer_names:
        try:
            peers["sklearn_lr"] = _sklearn_lr()
        except ImportError:
            notes.append("sklearn_lr skipped: scikit-learn is not installed (pip install scikit-learn)")
    if n_slow_episodes > 0 and "setfit" in peer_names:
        try:
            peers["setfit"] = _setfit(parse_encoder_id(peer_encoder)[0].locate())
        except ImportError:
            notes.append("setfit skipped: the setfit package is not installed (pip install setfit)")
    _, labels = remap_labels(names)
    inputs: dict[tuple[str, str], torch.Tensor] = {}

    def items(encoder_id: str, kind: str) -> torch.Tensor:
        if (encoder_id, kind) not in inputs:
            inputs[encoder_id, kind] = load_encoder(encoder_id, device).prepare(kind, list(texts)).to(device)
        return inputs[encoder_id, kind]

    rows: list[PeerRow] = []
    for n_shot in n_shots:
        config = EpisodeConfig(n_way, n_shot, n_query)
        # one draw covers both ranges: the sampler's episodes do not depend on how many are drawn
        drawn = sample_episodes(labels.tolist(), config, max(n_episodes, slow_from + n_slow_episodes), seed=seed)
        episodes, slow = drawn[:n_episodes], drawn[slow_from : slow_from + n_slow_episodes]
        for method, encoder_id in parsed:
            encoder = load_encoder(encoder_id, device)
            spec = get_method(method)
            spec.check_applicable("text", encoder.id)
            kind = spec.input_kind("text")
            is_slow = kind in SLOW_KINDS
            row = PeerRow(f"{method}@{encoder.id}", encoder.id, n_shot, first_episode=slow_from if is_slow else 0)
            chosen = slow if is_slow else episodes
            if chosen:
                run = run_episodes(method, items(encoder_id, kind), chosen,
                                   context=LearnerContext(encoder.id, encoder.feature_dim, device))
                row.accuracies = run.accuracies
                row.train_seconds = [outcome.fit_seconds for outcome in run.outcomes]
            if row.accuracies:
                rows.append(row)
                log(_line(row.summary()))
        if "sklearn_lr" in peers and episodes:
            row = PeerRow("sklearn_lr", peer_encoder, n_shot)
            for episode in episodes:
                support, query = episode.split(items(peer_encoder, "features").cpu())
                predicted, seconds = peers["sklearn_lr"](support, episode.support_labels, query)
                row.accuracies.append(_accuracy(predicted, episode))
                row.train_seconds.append(seconds)
            rows.append(row)
            log(_line(row.summary()))
        if "setfit" in peers and slow:
            row = PeerRow("setfit", peer_encoder, n_shot, first_episode=slow_from)
            for index, episode in enumerate(slow, start=slow_from):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    predicted, seconds = peers["setfit"](
                        [texts[i] for i in episode.support_indices.tolist()], episode.support_labels.tolist(),
                        [texts[i] for i in episode.query_indices.tolist()], index,
                    )
                row.accuracies.append(_accuracy(predicted, episode))
                row.train_seconds.append(seconds)
            rows.append(row)
            log(_line(row.summary()))
    return rows, notes


def _accuracy(predicted: torch.Tensor, episode: Episode) -> float:
    return (predicted.cpu() == episode.query_labels).float().mean().item()


def _line(summary: dict) -> str:
    return (f"{summary['method']:<28}{summary['n_shot']:>6}{summary['episodes']:>10}{summary['accuracy']:>10.4f}"
            f"{summary['ci95']:>9.4f}{summary['train_s']:>11.3f}")


def report(rows: Sequence[PeerRow]) -> dict:
    """Summaries, paired differences of our methods to each peer, and training-time ratios to SetFit."""
    summaries = [row.summary() for row in rows]
    differences, ratios = [], []
    for ours in (row for row in rows if row.method not in PEERS):
        for peer in (row for row in rows if row.method in PEERS and row.n_shot == ours.n_shot):
            difference = paired_difference(ours, peer)
            if difference is None:
                continue
            differences.append(difference)
            if peer.method == "setfit":
                mine, theirs, n = _overlap(ours, peer)
                ratio = sum(ours.train_seconds[mine]) / max(sum(peer.train_seconds[theirs]), 1e-9)
                ratios.append({"method": ours.method, "n_shot": ours.n_shot, "episodes": n,
                               "train_s": round(sum(ours.train_seconds[mine]) / n, 4),
                               "setfit_train_s": round(sum(peer.train_seconds[theirs]) / n, 4),
                               "time_ratio": round(ratio, 4)})
    return {"results": summaries, "paired_differences": differences, "time_vs_setfit": ratios}


def format_report(result: dict) -> str:
    """Plain-text tables of a ``report``."""
    lines = [f"{'method':<28}{'shots':>6}{'episodes':>10}{'accuracy':>10}{'ci95':>9}{'train_s':>11}"]
    lines += [_line(summary) for summary in result["results"]]
    lines += ["", f"{'ours - peer':<44}{'shots':>6}{'episodes':>10}{'difference':>12}{'ci95':>9}"]
    lines += [
        f"{d['method'] + ' - ' + d['peer']:<44}{d['n_shot']:>6}{d['episodes']:>10}{d['difference']:>+12.4f}{d['ci95']:>9.4f}"
        for d in result["paired_differences"]
    ]
    if result["time_vs_setfit"]:
        lines += ["", f"{'training time vs setfit':<28}{'shots':>6}{'episodes':>10}{'train_s':>10}{'setfit_s':>10}{'ratio':>8}"]
        lines += [
            f"{r['method']:<28}{r['n_shot']:>6}{r['episodes']:>10}{r['train_s']:>10.3f}{r['setfit_train_s']:>10.3f}"
            f"{r['time_ratio']:>8.3f}"
            for r in result["time_vs_setfit"]
        ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fewshot_demo.text.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="bbc, chatterbot, or a text,label CSV/TSV/JSONL file")
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--n-shot", type=int, nargs="+", default=[1, 5, 8])
    parser.add_argument("--n-query", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=200, help="episodes for frozen-feature methods and sklearn_lr")
    parser.add_argument("--setfit-episodes", type=int, default=20,
                        help="N episodes (from --slow-from), for SetFit and the methods that fine-tune the encoder (0: neither)")
    parser.add_argument("--slow-from", type=int, default=0,
                        help="index of the first of those N episodes, to split a long run over processes (see merge)")
    parser.add_argument("--methods", nargs="*", default=list(DEFAULT_METHODS), help="our methods as method@encoder_id")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS, help="which peers to run")
    parser.add_argument("--peer-encoder", default="minilm", help="the encoder the peers use")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser


def _emit(result: dict, out: Path | None) -> int:
    """Print the report's tables, write its JSON to ``out`` when given; the exit code."""
    print(format_report(result))
    if out is not None:
        out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


def merge_main(argv: Sequence[str]) -> int:
    """``merge A.json B.json ... [--out M.json]``: join runs over consecutive episode ranges, re-pair."""
    parser = argparse.ArgumentParser(prog="python -m fewshot_demo.text.peers merge",
                                     description="Join peers runs (--out files) over consecutive episode ranges.")
    parser.add_argument("runs", nargs="+", type=Path, help="JSON files written by --out")
    parser.add_argument("--out", type=Path, default=None, help="write the merged results as JSON here")
    args = parser.parse_args(argv)
    try:
        runs = [json.loads(path.read_text(encoding="utf-8")) for path in args.runs]
        settings = {(run["data"], run["n_way"], run["n_query"], run["seed"]) for run in runs}
        if len(settings) > 1:
            raise UserInputError(f"the runs differ in data, n_way, n_query or seed: {sorted(settings)}")
        rows = merge_rows([PeerRow.from_summary(summary) for run in runs for summary in run["results"]])
    except (KeyError, TypeError) as error:
        print(f"error: cannot merge: a file is not the JSON that peers --out writes (missing {error})", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print(f"error: cannot merge: {error}", file=sys.stderr)
        return 2
    first = runs[0]
    notes = sorted({note for run in runs for note in run.get("notes", [])})
    result = {"data": first["data"], "n_way": first["n_way"], "n_query": first["n_query"], "seed": first["seed"],
              "torch_threads": first.get("torch_threads"), "notes": notes, "merged_from": [str(p) for p in args.runs],
              **report(rows)}
    return _emit(result, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        torch.set_num_threads(settings().torch_threads)
        texts, names, notes = load_corpus(args.data)
        print(f"{len(texts)} texts in {len(set(names))} classes; {args.n_way}-way, {args.n_query} queries, seed {args.seed}",
              file=sys.stderr)
        rows, run_notes = run_peers(
            texts, names, args.methods, args.n_shot, args.n_way, args.n_query, args.episodes,
            args.setfit_episodes, args.slow_from, args.seed, args.peer_encoder, args.device, args.peers,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in notes + run_notes:
        print(f"note: {note}", file=sys.stderr)
    result = {"data": args.data, "n_way": args.n_way, "n_query": args.n_query, "seed": args.seed,
              "torch_threads": torch.get_num_threads(), "notes": notes + run_notes, **report(rows)}
    return _emit(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
