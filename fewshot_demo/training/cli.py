"""The training command: ``python -m fewshot_demo.train`` and its ``evaluate``, ``push`` and ``pull``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.evaluation import paired_difference
from fewshot_demo.core.runner import run_episodes
from fewshot_demo.data.episodes import EpisodeConfig, sample_episodes
from fewshot_demo.data.splits import (
    TRACKS,
)
from fewshot_demo.methods import LearnerContext
from fewshot_demo.methods.checkpoint_index import SHIPPED_DIR, checkpoint_name
from fewshot_demo.methods.checkpoint_store import pull_from_hub, push_to_hub
from fewshot_demo.methods.registry import meta_trained_methods, recipe_of
from fewshot_demo.runtime.device import pick_device
from fewshot_demo.runtime.distributed import join_from_environment
from fewshot_demo.training.config import TrainConfig
from fewshot_demo.training.loop import meta_train, save_trained
from fewshot_demo.training.task_pools import (
    load_pool,
    symmetric_classes,
    unlabelled_pool,
)


def _settings_only(argv: list[str]) -> list[str]:
    """The arguments that decide the checkpoint: without --no-progress and without where --out put it."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif arg != "--no-progress" and not arg.startswith("--out="):
            kept.append(arg)
    return kept


def _train_parser() -> argparse.ArgumentParser:
    """The training command's arguments, with TrainConfig's defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m fewshot_demo.train",
        description="Meta-train a few-shot learner episodically, or pretrain one without labels (simclr, mae), "
        "and save a safetensors checkpoint; under torchrun on several processes. "
        "Other commands: `evaluate`, `push`, `pull` (see `python -m fewshot_demo.train evaluate -h`).",
    )
    defaults = TrainConfig()
    parser.add_argument("--method", choices=meta_trained_methods(), default=defaults.method,
                        help="a meta-learner (trained on labelled tasks) or a self-supervised method (simclr, mae: "
                        "trained on the base images without their labels)")
    parser.add_argument("--backbone", choices=TRACKS, default=defaults.backbone)
    parser.add_argument("--n-way", type=int, default=defaults.n_way)
    parser.add_argument("--n-shot", type=int, nargs="+", default=list(defaults.n_shots), help="shots per training task (one drawn per task)")
    parser.add_argument("--n-query", type=int, default=defaults.n_query)
    parser.add_argument("--meta-batch", type=int, default=defaults.meta_batch)
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--meta-lr", type=float, default=defaults.meta_lr)
    parser.add_argument("--step-size-meta-lr", type=float, default=defaults.step_size_meta_lr)
    parser.add_argument("--inner-steps", type=int, default=defaults.inner_steps)
    parser.add_argument("--inner-lr", type=float, default=defaults.inner_lr)
    parser.add_argument("--fixed-inner-lr", action="store_true", help="do not meta-learn per-tensor step sizes")
    parser.add_argument("--rank", type=int, default=defaults.rank)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--stamp-classes", action="store_true", help="pixels28: add the Tux Paint stamp folders (except clothes) as base classes")
    parser.add_argument("--symmetric-classes", action="store_true", help="pixels28: rotated and mirrored base classes count as new classes (x8)")
    parser.add_argument("--max-shift", type=int, default=defaults.max_shift, help="pixels28: move training images by up to this many pixels")
    parser.add_argument("--fashion-tasks", type=float, default=defaults.fashion_tasks,
                        help="pixels28: fraction of training tasks drawn from the Fashion-MNIST base classes only")
    parser.add_argument("--weight-average", type=float, default=defaults.weight_average, help="decay of a moving average of the weights to validate and keep (0: off)")
    parser.add_argument("--val-every", type=int, default=defaults.val_every)
    parser.add_argument("--val-episodes", type=int, default=defaults.val_episodes)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    ssl = parser.add_argument_group("self-supervised pretraining (simclr, mae; no labels are read)")
    ssl.add_argument("--images", type=Path, default=None, metavar="FOLDER",
                     help="pretrain on every image under FOLDER instead of the base classes' images")
    ssl.add_argument("--batch-size", type=int, default=defaults.batch_size, help="unlabelled images per step, over all processes")
    ssl.add_argument("--temperature", type=float, default=defaults.temperature, help="simclr: NT-Xent temperature")
    ssl.add_argument("--mask-ratio", type=float, default=defaults.mask_ratio, help="mae: share of the patches hidden")
    ssl.add_argument("--patch-size", type=int, default=defaults.patch_size, help="mae: side of a square patch in pixels")
    ssl.add_argument("--norm-pix", action="store_true",
                     help="mae: reconstruct each patch normalised by its own mean and spread (He et al. 2022)")
    ssl.add_argument("--min-area", type=float, default=defaults.min_area, help="views: smallest share of the image a crop keeps")
    ssl.add_argument("--flip", action="store_true", help="views: mirror half of them (sensible for garments, not for digits)")
    ssl.add_argument("--contrast", type=float, default=defaults.contrast, help="views: foreground intensity varies by up to this factor")
    ssl.add_argument("--noise", type=float, default=defaults.noise, help="views: standard deviation of added Gaussian noise")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: CUDA when present); under torchrun, "
                        "each process takes the GPU of its local rank")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (per process)")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--dry-run", action="store_true", help="3 iterations, 4 validation episodes, temporary output")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _config_from(args: argparse.Namespace) -> TrainConfig:
    """The run's settings from the parsed arguments (``--dry-run``: 3 iterations, 4 validation episodes).

    Raises:
        UserInputError: for settings that do not go together.
    """
    return TrainConfig(
        method=args.method, backbone=args.backbone, n_way=args.n_way, n_shots=tuple(args.n_shot),
        n_query=args.n_query, meta_batch=args.meta_batch,
        iterations=3 if args.dry_run else args.iterations, meta_lr=args.meta_lr,
        step_size_meta_lr=args.step_size_meta_lr,
        inner_steps=args.inner_steps, inner_lr=args.inner_lr, learn_inner_lr=not args.fixed_inner_lr,
        rank=args.rank, hidden=args.hidden, stamp_classes=args.stamp_classes,
        symmetric_classes=args.symmetric_classes, max_shift=args.max_shift, fashion_tasks=args.fashion_tasks,
        weight_average=args.weight_average,
        val_every=args.val_every, val_episodes=4 if args.dry_run else args.val_episodes, seed=args.seed,
        images=None if args.images is None else str(args.images),
        batch_size=args.batch_size, temperature=args.temperature, mask_ratio=args.mask_ratio,
        patch_size=args.patch_size, norm_pix=args.norm_pix, min_area=args.min_area, flip=args.flip,
        contrast=args.contrast, noise=args.noise,
    )


def _train_main(argv: list[str]) -> None:
    parser = _train_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = _config_from(args)
        world, device = join_from_environment(pick_device(args.device))
        torch.manual_seed(config.seed)
        if config.images is not None:
            train_pool = unlabelled_pool(Path(config.images))
        else:
            train_pool = load_pool(config.backbone, "train", config.seed, stamps=config.stamp_classes)
        val_pool = load_pool(config.backbone, "val", config.seed)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    try:
        tasks_pool = symmetric_classes(train_pool) if config.symmetric_classes else train_pool
        with_symmetries = f", {len(tasks_pool.class_names)} with their symmetries" if config.symmetric_classes else ""
        processes = f", {world.size} processes" if world.size > 1 else ""
        unlabelled = " (their labels are never read)" if recipe_of(config.method).outer_update == "batch" else ""
        if world.is_main:
            print(
                f"{config.method} on {config.backbone}: {len(train_pool.class_names)} training classes{with_symmetries} "
                f"({len(tasks_pool.labels)} items){unlabelled}, {len(val_pool.class_names)} validation classes, "
                f"device {device}{processes}"
            )
        try:
            state, summary = meta_train(config, tasks_pool, val_pool, device, progress=not args.no_progress, world=world)
        except ValueError as error:
            parser.exit(2, f"error: {error}\n")
        if world.is_main:
            out = args.out
            if out is None:
                out = Path(tempfile.mkdtemp(prefix="fewshot-dry-run-")) if args.dry_run else SHIPPED_DIR / checkpoint_name(config.method, config.backbone)
            command = "python -m fewshot_demo.train " + " ".join(shlex.quote(a) for a in _settings_only(argv))
            save_trained(state, config, summary, train_pool, val_pool, out, command)
            print(json.dumps({"checkpoint": str(out), **summary}))
        world.barrier()
    finally:
        world.close()


def _evaluate_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fewshot_demo.train evaluate",
        description="Evaluate learners on a track's held-out classes (Tux Paint's 9 evaluation folders, "
        "or Fashion-MNIST classes 5-9 test images for pixels28) on the same episodes for every method.",
    )
    parser.add_argument("--backbone", choices=TRACKS, default="efficientnet_lite0")
    parser.add_argument("--methods", nargs="+", default=["maml", "maml_scratch", "protonet", "protonet_plain", "linear"])
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--n-shot", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--n-query", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--paired-with", default=None, metavar="METHOD",
                        help="also print each method's paired difference to METHOD on the same episodes")
    args = parser.parse_args(argv)
    try:
        if args.paired_with is not None and args.paired_with not in args.methods:
            raise UserInputError(f"--paired-with {args.paired_with} must be one of --methods")
        device = pick_device(args.device)
        pool = load_pool(args.backbone, "eval", args.seed).to(device)
        episodes_by_shot = {
            n_shot: sample_episodes(pool.labels.tolist(), EpisodeConfig(args.n_way, n_shot, args.n_query), args.episodes, args.seed)
            for n_shot in args.n_shot
        }
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    context = LearnerContext(backbone_id=args.backbone, feature_dim=784 if args.backbone == "pixels28" else pool.items.shape[-1], device=device)
    results = []
    for n_shot, episodes in episodes_by_shot.items():
        per_episode: dict[str, list[float]] = {}
        for method in args.methods:
            run = run_episodes(method, pool.items, episodes, context=context)
            per_episode[method] = run.accuracies
            summary = run.summary()
            results.append(summary.to_dict())
            print(f"{n_shot}-shot {method:15s} {summary.accuracy:.4f} +- {summary.ci95:.4f}  {summary.ms_per_episode:.1f} ms/episode", flush=True)
        if args.paired_with is not None:
            for method in args.methods:
                if method != args.paired_with:
                    difference, ci95 = paired_difference(per_episode[method], per_episode[args.paired_with])
                    results.append({"method": method, "minus": args.paired_with, "n_shot": n_shot,
                                    "difference": round(difference, 4), "ci95": round(ci95, 4)})
                    print(f"{n_shot}-shot {method} - {args.paired_with}: {100 * difference:+.2f} +- {100 * ci95:.2f} points", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"backbone": args.backbone, "classes": pool.class_names, "n_way": args.n_way,
                                        "episodes": args.episodes, "seed": args.seed, "results": results}, indent=2) + "\n")


def _hub_main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m fewshot_demo.train {command}")
    if command == "push":
        parser.add_argument("checkpoint", type=Path, help="checkpoint folder to upload")
    parser.add_argument("--repo-id", required=True, help="Hugging Face model repository, e.g. you/maml-pixels28")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    try:
        if command == "push":
            print(push_to_hub(args.checkpoint, args.repo_id, private=args.private))
        else:
            print(pull_from_hub(args.repo_id, revision=args.revision))
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "evaluate":
        _evaluate_main(argv[1:])
    elif argv and argv[0] in ("push", "pull"):
        _hub_main(argv[0], argv[1:])
    else:
        _train_main(argv)
