"""What the processes of a training run exchange: averaged metrics, stop flags, gathered
contrastive keys (with gradients) and per-process objects (random states).

Each function is the identity (or a one-element list) for a single process, so the trainers
call them unconditionally.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from ..runtime import DistEnv


def all_reduce_mean(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Average a tensor over the processes (identity for one process)."""
    if env.distributed:
        values = values.clone()
        dist.all_reduce(values)
        values /= env.world
    return values


def any_process(flag: bool, env: DistEnv) -> bool:
    """True on every process when ``flag`` is true on any of them."""
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums the gradients of every process and keeps
    this process's slice (the gradient of the sum of all processes' losses)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """[B, ...] per process -> [world·B, ...] (rank order), differentiable; identity for one process."""
    return _GatherWithGrad.apply(x) if env.distributed else x


def gather_objects(obj: Any, env: DistEnv) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not env.distributed:
        return [obj]
    out: list = [None] * env.world
    dist.all_gather_object(out, obj)
    return out
