"""Training past one process: ``torch.distributed`` for the training command, one process by default.

    torchrun --nproc_per_node 4 -m fewshot_demo.train --method protonet --backbone pixels28 ...

``torchrun`` starts one process per GPU (or per CPU share) and sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; ``join_from_environment`` reads them and joins the process group (NCCL on GPUs,
gloo on the CPU). Without ``torchrun`` it is a world of one process and nothing here communicates.

How a run is split, so that N processes compute what one process computes with the same command:

- a meta-batch of tasks (or a batch of images) is the *global* batch: every process draws all of
  it from the same seeded generator, so their random streams stay identical, and keeps its share
  (``World.share``); the other processes' tasks are drawn but not computed;
- each process divides its losses by the *global* count, and ``World.sum_gradients`` adds the
  gradients over processes (one ``all_reduce``): the sum is the gradient of the global mean, and
  every process then takes the same optimiser step, so the weights stay equal everywhere;
- contrastive losses that compare every image of the batch with every other gather the embeddings
  with ``World.gather`` (gradients flow back to the process that made each embedding);
- only process 0 validates, shows progress and writes the checkpoint.

Gradients are summed by hand rather than with ``DistributedDataParallel`` because MAML's inner loop
calls the network through ``torch.func.functional_call`` on parameter dictionaries, which DDP's
hooks do not see.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from fewshot_demo.config.errors import UserInputError


@dataclass(frozen=True)
class World:
    """The processes of one training run.

    Attributes:
        rank: this process's number, 0 .. size-1 (0 validates and writes the checkpoint).
        size: how many processes train together (1: no ``torch.distributed`` at all).
        local_rank: this process's number on its machine (its GPU index under ``torchrun``).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True for the process that validates, reports and writes the checkpoint."""
        return self.rank == 0

    def share(self, count: int) -> np.ndarray:
        """The positions 0..count-1 of a global batch this process computes: a contiguous block,
        as equal as the count allows (blocks in rank order, so gathered results keep batch order)."""
        return np.array_split(np.arange(count), self.size)[self.rank]

    def sum_gradients(self, parameters: Sequence[Tensor]) -> None:
        """Add every parameter's gradient over the processes (in place; a missing one counts as 0)."""
        if self.size == 1:
            return

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for parameter, grad in zip(parameters, grads):
            parameter.grad = flat[offset : offset + grad.numel()].view_as(grad).clone()
            offset += grad.numel()

    def gather(self, tensor: Tensor) -> Tensor:
        """Concatenate every process's (n, ...) tensor along dim 0, in rank order, keeping gradients.

        Every process must pass the same shape. The backward pass sends each process the gradient of
        all processes' losses with respect to its own rows.
        """
        if self.size == 1:
            return tensor
        return _GatherWithGradient.apply(tensor, self.rank, self.size)

    def barrier(self) -> None:
        """Wait until every process gets here (no-op for one process)."""
        if self.size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (no-op for one process)."""
        if self.size > 1:
            if dist.is_initialized():
                dist.destroy_process_group()


class _GatherWithGradient(torch.autograd.Function):
    """all_gather forward; backward sums the gathered gradient over processes and keeps this
    process's rows. Written with all_reduce, which every backend has (gloo lacks reduce_scatter)."""

    @staticmethod
    def forward(ctx, tensor: Tensor, rank: int, size: int) -> Tensor:  # type: ignore[override]

        ctx.rank, ctx.rows = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]

        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None, None


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def join_from_environment(device: torch.device) -> tuple[World, torch.device]:
    """The world ``torchrun`` describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, and this process's device.

    One process (no ``WORLD_SIZE``, or 1) joins nothing and keeps ``device``. Under torchrun each
    process joins the group (NCCL on CUDA, gloo on the CPU) and, on CUDA, takes the GPU of its local
    rank.

    Raises:
        UserInputError: when the variables are malformed, or there are fewer GPUs than processes here.
    """
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UserInputError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers; start the run with torchrun") from None
    if size <= 1:
        return World(), device
    if not 0 <= rank < size:
        raise UserInputError(f"RANK {rank} is outside 0..{size - 1}; start the run with torchrun")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserInputError(
                f"process {local_rank} on this machine has no GPU ({torch.cuda.device_count()} found); "
                "start at most one process per GPU with torchrun --nproc_per_node"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)

    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device))
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank), device
