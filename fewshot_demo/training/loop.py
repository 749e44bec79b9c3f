"""The one training loop: sampling, the outer optimiser, validation, keeping the best state, and
splitting each step's tasks or images over processes (``fewshot_demo.runtime.distributed``).

Each method file holds only its algorithm (MAML's inner loop and outer loss, Reptile's task update,
SimCLR's and the masked autoencoder's batch losses, the classifiers), behind its ``MetaRecipe``."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.runner import run_episodes
from fewshot_demo.data.episodes import EpisodeConfig, choose_n_query, sample_episodes
from fewshot_demo.data.splits import (
    FASHION_SOURCE,
)
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.methods.checkpoint_store import save_checkpoint
from fewshot_demo.methods.networks import (
    Conv4,
    EmbeddingNetwork,
    FeatureProjection,
    prepare_episode,
)
from fewshot_demo.methods.registry import recipe_of
from fewshot_demo.runtime.distributed import World
from fewshot_demo.training.config import TrainConfig
from fewshot_demo.training.task_pools import TaskPool, random_shift, sample_task


def build_fresh_network(config: TrainConfig, feature_dim: int) -> EmbeddingNetwork:
    if config.backbone == "pixels28":
        return Conv4(in_channels=1, hidden=config.hidden, image_size=28)
    return FeatureProjection(feature_dim, rank=config.rank)


@dataclass
class MetaState:
    """What is being trained: the network, the method's own tensors (both saved) and the modules
    trained beside them and dropped afterwards (``heads``: a projection head, a decoder)."""

    network: EmbeddingNetwork
    extras: dict[str, Tensor] = field(default_factory=dict)
    heads: nn.Module | None = None

    def parameters(self) -> list[Tensor]:
        heads = list(self.heads.parameters()) if self.heads is not None else []
        return list(self.network.parameters()) + list(self.extras.values()) + heads


def init_state(config: TrainConfig, feature_dim: int, device: torch.device) -> MetaState:
    torch.manual_seed(config.seed)
    network = build_fresh_network(config, feature_dim).to(device)
    recipe = recipe_of(config.method)
    return MetaState(network, recipe.init_extras(network, config), recipe.init_heads(network, config))


def task_loss(state: MetaState, config: TrainConfig, task: tuple[Tensor, Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The episodic loss of one task for the gradient-based outer loops; returns (loss, accuracy)."""
    support, support_labels, query, query_labels = task
    support, query, _ = prepare_episode(state.network, support, query)
    return recipe_of(config.method).task_loss(state.network, state.extras, config, support, support_labels, query, query_labels)


def learner_for(state: MetaState, config: TrainConfig) -> FewShotLearner:
    """The test-time learner for the current meta-parameters (the same code users run)."""
    return recipe_of(config.method).learner(state.network, state.extras, config)


def validate(state: MetaState, config: TrainConfig, pool: TaskPool, n_episodes: int) -> float:
    """Mean query accuracy on fixed validation episodes, the learner users run on the current state.

    The episodes are split evenly over ``config.n_shots`` (half 1-shot, half 5-shot by default) and
    drawn by ``episodes.sample_episodes`` from seed ``config.seed + 1``, with 15 queries per class, or
    fewer where classes are small (``episodes.choose_n_query``); they run in ``fewshot_demo.core.runner``.
    """
    labels = pool.labels.tolist()
    n_way = min(config.n_way, len(pool.class_names))
    accuracies: list[float] = []
    for index, n_shot in enumerate(config.n_shots):
        count = n_episodes // len(config.n_shots) + int(index < n_episodes % len(config.n_shots))
        if count == 0:
            continue
        shape = EpisodeConfig(n_way, n_shot, choose_n_query(labels, n_way, n_shot))
        episodes = sample_episodes(labels, shape, count, seed=config.seed + 1)
        accuracies += run_episodes(lambda: learner_for(state, config), pool.items, episodes, name=config.method).accuracies
    state.network.train()
    return float(np.mean(accuracies))


def meta_train(
    config: TrainConfig,
    train_pool: TaskPool,
    val_pool: TaskPool,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
    world: World | None = None,
) -> tuple[MetaState, dict[str, Any]]:
    """Train and return the state with the best validation accuracy, and a summary.

    Meta-learners train on labelled tasks drawn from ``train_pool``; self-supervised methods
    (``outer_update == "batch"``) on batches of its images alone, never reading its labels.

    Under several processes (``world``, see ``fewshot_demo.runtime.distributed``) each process computes its
    share of every step's tasks or images and the gradients are summed over processes, so the
    weights equal a one-process run's up to floating-point rounding; only the main process
    validates and returns the best state, the others return their last one.

    The summary holds the validation accuracy before training (``val_accuracy_init``), the best one
    (``val_accuracy``) and at which iteration it was reached.
    """
    world = world or World()
    train_pool, val_pool = train_pool.to(device), val_pool.to(device)
    fashion_pool = train_pool.classes_starting_with(FASHION_SOURCE + "/") if config.fashion_tasks else None
    if fashion_pool is not None and len(fashion_pool.class_names) < 2:
        raise UserInputError("--fashion-tasks needs Fashion-MNIST base classes in the training pool")
    recipe = recipe_of(config.method)
    if recipe.outer_update == "batch" and config.batch_size % world.size:
        raise UserInputError(
            f"--batch-size {config.batch_size} must split evenly over the {world.size} processes; "
            f"use a multiple of {world.size}"
        )
    state = init_state(config, train_pool.items.shape[-1], device)
    state.network.train()
    generator = np.random.default_rng(config.seed)
    reptile = recipe.outer_update == "delta"
    if reptile:
        optimizer = torch.optim.SGD(state.parameters(), lr=config.meta_lr)
    else:
        # Scalars (the projection's output scale, the method's own tensors) take the larger step:
        # at the network's rate the scale would stay at its initial value, and it alone decides
        # how confident ProtoNet's probabilities are (the query loss calibrates it).
        scalars = [p for name, p in state.network.named_parameters() if p.ndim == 0] + list(state.extras.values())
        weights = [p for p in state.network.parameters() if p.ndim > 0]
        if state.heads is not None:
            weights += list(state.heads.parameters())
        optimizer = torch.optim.Adam(
            [{"params": weights, "lr": config.meta_lr}, {"params": scalars, "lr": config.step_size_meta_lr}]
        )
    main = world.is_main
    initial = validate(state, config, val_pool, config.val_episodes) if main else float("nan")
    best = {"val_accuracy": initial, "iteration": 0}
    best_state = copy.deepcopy(state)
    # With a high meta learning rate the iterates jump around the best region of the weights;
    # their running average sits nearer its middle, and is what gets validated and kept.
    average = copy.deepcopy(state) if config.weight_average else None
    if main:
        log(f"validation accuracy before training: {initial:.4f}")
    bar = tqdm(range(1, config.iterations + 1), desc=f"training {config.method}", disable=not (progress and main))
    start = time.perf_counter()
    for iteration in bar:
        optimizer.zero_grad()
        if recipe.outer_update == "batch":
            losses, accuracies = _batch_gradients(state, config, train_pool.items, generator, world)
        else:
            losses, accuracies = _task_gradients(state, config, train_pool, fashion_pool, generator, world)
        world.sum_gradients(state.parameters())
        if reptile:
            for group in optimizer.param_groups:  # linear annealing of epsilon, as in the paper
                group["lr"] = config.meta_lr * (1 - (iteration - 1) / config.iterations)
        optimizer.step()
        if average is not None:
            with torch.no_grad():
                for kept, current in zip(average.parameters(), state.parameters()):
                    kept.lerp_(current, 1 - config.weight_average)
        if losses:
            metric = "acc" if recipe.outer_update != "batch" else recipe.metric_name
            bar.set_postfix(**{"loss": f"{np.mean(losses):.3f}", metric: f"{np.mean(accuracies):.3f}",
                               "best": f"{best['val_accuracy']:.3f}"})
        if main and (iteration % config.val_every == 0 or iteration == config.iterations):
            accuracy = validate(state if average is None else average, config, val_pool, config.val_episodes)
            if accuracy > best["val_accuracy"]:
                best = {"val_accuracy": accuracy, "iteration": iteration}
                best_state = copy.deepcopy(state if average is None else average)
            bar.write(f"iteration {iteration}: validation accuracy {accuracy:.4f} (best {best['val_accuracy']:.4f})")
    if not main:  # nothing validated here: the last state (equal to the main process's last state)
        best_state = state if average is None else average
    summary = {
        "val_accuracy_init": round(initial, 4),
        "val_accuracy": round(best["val_accuracy"], 4),
        "best_iteration": best["iteration"],
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    if world.size > 1:
        summary["processes"] = world.size
    return best_state, summary


def _task_gradients(
    state: MetaState, config: TrainConfig, train_pool: TaskPool, fashion_pool: TaskPool | None,
    generator: np.random.Generator, world: World,
) -> tuple[list[float], list[float]]:
    """Accumulate the gradients of this process's share of one meta-batch of labelled tasks.

    Every process draws all ``meta_batch`` tasks (so the generators stay in step) and computes the
    ones ``world.share`` gives it; each task's loss (or Reptile's step) is divided by the whole
    meta-batch, so the gradients summed over processes are the meta-batch's mean.
    """
    recipe = recipe_of(config.method)
    mine = set(world.share(config.meta_batch).tolist())
    losses, accuracies = [], []
    for index in range(config.meta_batch):
        n_shot = int(generator.choice(config.n_shots))
        pool = train_pool
        if fashion_pool is not None and generator.random() < config.fashion_tasks:
            pool = fashion_pool
        n_way = min(config.n_way, len(pool.class_names))
        task = sample_task(pool, n_way, n_shot, config.n_query, generator)
        if config.max_shift:
            support, support_labels, query, query_labels = task
            task = (random_shift(support, config.max_shift, generator), support_labels,
                    random_shift(query, config.max_shift, generator), query_labels)
        if index not in mine:
            continue
        if recipe.outer_update == "delta":
            support, support_labels, query, query_labels = task
            support, query, _ = prepare_episode(state.network, support, query)
            delta = recipe.task_delta(
                state.network, state.extras, config, torch.cat([support, query]), torch.cat([support_labels, query_labels]),
            )
            for name, parameter in state.network.named_parameters():
                # SGD on -delta / meta_batch: theta <- theta + epsilon * mean(phi - theta).
                step = -delta["network." + name] / config.meta_batch
                parameter.grad = step if parameter.grad is None else parameter.grad + step
            continue
        loss, accuracy = task_loss(state, config, task)
        (loss / config.meta_batch).backward()
        losses.append(loss.item())
        accuracies.append(accuracy.item())
    return losses, accuracies


def _batch_gradients(
    state: MetaState, config: TrainConfig, images: Tensor, generator: np.random.Generator, world: World,
) -> tuple[list[float], list[float]]:
    """Accumulate the gradients of this process's share of one batch of unlabelled images.

    The batch (``batch_size`` distinct images, drawn the same in every process) is all the recipe
    gets: pixels, no labels. Its loss is already divided by the whole batch (see ``batch_loss``).
    """
    indices = generator.choice(len(images), size=min(config.batch_size, len(images)), replace=False)
    batch = images[torch.as_tensor(indices, device=images.device)]
    loss, metric = recipe_of(config.method).batch_loss(state.network, state.heads, config, batch, generator, world)
    loss.backward()
    return [loss.item() * world.size], [metric.item()]


def save_trained(state: MetaState, config: TrainConfig, summary: dict[str, Any], train_pool: TaskPool, val_pool: TaskPool, out: Path, command: str) -> Path:
    """Write the checkpoint with its full config (classes, settings, validation accuracy, command)."""
    extras = {name: value.detach() for name, value in state.extras.items()}
    fields: dict[str, Any] = {
        "n_way": config.n_way,
        "n_shots": list(config.n_shots),
        "training": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "training_classes": train_pool.class_names,
        "validation_classes": val_pool.class_names,
        **summary,
        "command": command,
    }
    fields.update(recipe_of(config.method).checkpoint_fields(config))
    return save_checkpoint(out, config.method, state.network, config.backbone, extras, fields)
