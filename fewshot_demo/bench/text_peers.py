"""Our text methods next to two outside peers, on exactly the bench's episodes.

    python -m fewshot_demo.bench.text_peers --data bbc --n-shot 1 5 8 --episodes 200 --setfit-episodes 20
    python -m fewshot_demo.bench.text_peers merge run-a.json run-b.json --out merged.json

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
drawn as by ``fewshot_demo.bench.benchmark`` (same seed, same sampler, classes in order of first appearance),
so ``--data bbc`` gives the episodes of ``python -m fewshot_demo.bench --data bbc.csv`` with the CSV
written by ``python -m fewshot_demo.data.corpora bbc bbc.csv``. One torch thread unless
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
from pathlib import Path
from typing import Callable, Sequence

import torch

from fewshot_demo.bench.peer_rows import (
    PEERS,
    PeerRow,
    format_report,
    merge_rows,
    report,
    summary_line,
)
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import settings
from fewshot_demo.core.runner import run_episodes
from fewshot_demo.data.corpora import BENCHMARK_CORPORA
from fewshot_demo.data.episodes import (
    Episode,
    EpisodeConfig,
    remap_labels,
    sample_episodes,
)
from fewshot_demo.data.texts import read_text_table
from fewshot_demo.encoders.registry import get_encoder
from fewshot_demo.encoders.text import parse_encoder_id
from fewshot_demo.methods import LearnerContext, available_methods, get_method

DEFAULT_METHODS = ("linear@minilm", "linear@minilm:layers", "finetune@minilm:layers")
#: Methods whose inputs are tokens (they fine-tune the encoder): run on the SetFit episode budget.
SLOW_KINDS = ("tokens",)


def load_corpus(data: str) -> tuple[list[str], list[str], list[str]]:
    """Texts, labels and notes of an installed corpus ("bbc", "chatterbot") or a CSV/TSV/JSONL file."""
    table = BENCHMARK_CORPORA[data]() if data in BENCHMARK_CORPORA else read_text_table(Path(data))
    return table.texts, table.labels, list(table.notes)


def split_method(spec: str) -> tuple[str, str]:
    """``"linear@minilm:layers"`` -> ("linear", "minilm:layers"); no ``@`` means the plain ``minilm``."""
    method, _, encoder_id = spec.partition("@")
    return method, encoder_id or "minilm"


def _sklearn_lr() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, float]]:
    from sklearn.linear_model import (
        LogisticRegression,  # deferred: optional (the peers extra), heavy
    )

    def run(support: torch.Tensor, labels: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, float]:
        began = time.perf_counter()
        model = LogisticRegression(max_iter=1000).fit(support.numpy(), labels.numpy())
        seconds = time.perf_counter() - began
        return torch.as_tensor(model.predict(query.numpy())), seconds

    return run


def _setfit(model_source: str) -> Callable[[list[str], list[int], list[str], int], tuple[torch.Tensor, float]]:
    # deferred: optional (the peers extra) and heavy; without them the SetFit rows are skipped
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
    device = torch.device(device)
    parsed = [split_method(spec) for spec in methods]
    unknown = [method for method, _ in parsed if method not in available_methods()]
    if unknown:
        raise UserInputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(available_methods())}")
    if slow_from < 0:
        raise UserInputError(f"--slow-from must be 0 or more (the index of an episode), not {slow_from}")
    peers, notes = _load_peers(peer_names, n_slow_episodes > 0, peer_encoder)
    _, labels = remap_labels(names)
    inputs: dict[tuple[str, str], torch.Tensor] = {}

    def items(encoder_id: str, kind: str) -> torch.Tensor:
        if (encoder_id, kind) not in inputs:
            inputs[encoder_id, kind] = get_encoder(encoder_id, device).prepare(kind, list(texts)).to(device)
        return inputs[encoder_id, kind]

    rows: list[PeerRow] = []
    for n_shot in n_shots:
        config = EpisodeConfig(n_way, n_shot, n_query)
        # one draw covers both ranges: the sampler's episodes do not depend on how many are drawn
        drawn = sample_episodes(labels.tolist(), config, max(n_episodes, slow_from + n_slow_episodes), seed=seed)
        episodes, slow = drawn[:n_episodes], drawn[slow_from : slow_from + n_slow_episodes]
        for method, encoder_id in parsed:
            encoder = get_encoder(encoder_id, device)
            spec = get_method(method)
            spec.check_applicable(encoder.modality, encoder.id)
            kind = spec.input_kind(encoder.modality)
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
                log(summary_line(row.summary()))
        if "sklearn_lr" in peers and episodes:
            rows.append(_sklearn_row(peers["sklearn_lr"], items(peer_encoder, "features").cpu(), episodes,
                                     peer_encoder, n_shot))
            log(summary_line(rows[-1].summary()))
        if "setfit" in peers and slow:
            rows.append(_setfit_row(peers["setfit"], texts, slow, slow_from, peer_encoder, n_shot))
            log(summary_line(rows[-1].summary()))
    return rows, notes


def _load_peers(peer_names: Sequence[str], slow: bool, peer_encoder: str) -> tuple[dict[str, Callable], list[str]]:
    """The peers that can run ({name: run}; SetFit only when ``slow`` episodes are asked for), and
    notes naming the ``pip install`` of each one whose package is missing.

    Raises:
        UserInputError: for an unknown peer name.
    """
    unknown = [name for name in peer_names if name not in PEERS]
    if unknown:
        raise UserInputError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    peers: dict[str, Callable] = {}
    notes: list[str] = []
    if "sklearn_lr" in peer_names:
        try:
            peers["sklearn_lr"] = _sklearn_lr()
        except ImportError:
            notes.append("sklearn_lr skipped: scikit-learn is not installed (pip install scikit-learn)")
    if slow and "setfit" in peer_names:
        try:
            peers["setfit"] = _setfit(parse_encoder_id(peer_encoder)[0].locate())
        except ImportError:
            notes.append("setfit skipped: the setfit package is not installed (pip install setfit)")
    return peers, notes


def _sklearn_row(run: Callable, features: torch.Tensor, episodes: Sequence[Episode], peer_encoder: str,
                 n_shot: int) -> PeerRow:
    """scikit-learn's logistic regression on each episode's (n_items, feature_dim) frozen features."""
    row = PeerRow("sklearn_lr", peer_encoder, n_shot)
    for episode in episodes:
        support, query = episode.split(features)
        predicted, seconds = run(support, episode.support_labels, query)
        row.accuracies.append(_accuracy(predicted, episode))
        row.train_seconds.append(seconds)
    return row


def _setfit_row(run: Callable, texts: Sequence[str], episodes: Sequence[Episode], first: int, peer_encoder: str,
                n_shot: int) -> PeerRow:
    """SetFit on each episode's raw texts, seeded with the episode's index (``first`` for the first)."""
    row = PeerRow("setfit", peer_encoder, n_shot, first_episode=first)
    for index, episode in enumerate(episodes, start=first):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predicted, seconds = run(
                [texts[i] for i in episode.support_indices.tolist()], episode.support_labels.tolist(),
                [texts[i] for i in episode.query_indices.tolist()], index,
            )
        row.accuracies.append(_accuracy(predicted, episode))
        row.train_seconds.append(seconds)
    return row


def _accuracy(predicted: torch.Tensor, episode: Episode) -> float:
    return (predicted.cpu() == episode.query_labels).float().mean().item()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fewshot_demo.bench.text_peers", description=__doc__.split("\n\n")[0])
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
    parser = argparse.ArgumentParser(prog="python -m fewshot_demo.bench.text_peers merge",
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
