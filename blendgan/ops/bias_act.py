"""Fused bias + activation: ``act(x + b) * gain``.

Public entry points are :func:`fused_bias_act` and the StyleGAN2-named
:func:`fused_leaky_relu`.  The reference implementation (:func:`fused_bias_act_ref`)
is plain PyTorch and runs anywhere; CUDA tensors go through our own kernel when the
extension is available (see :mod:`blendgan.ops.extensions`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import extensions

SQRT2 = math.sqrt(2.0)

# Each activation: (function of x, default alpha, default gain).
ACTIVATIONS = {
    "linear": (lambda x, alpha: x, 0.0, 1.0),
    "relu": (lambda x, alpha: F.relu(x), 0.0, SQRT2),
    "lrelu": (lambda x, alpha: F.leaky_relu(x, alpha), 0.2, SQRT2),
}


def _check(act: str):
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")


def _broadcast_bias(x: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """View a [C] bias so it broadcasts along ``dim`` of ``x``."""
    shape = [1] * x.ndim
    shape[dim] = b.shape[0]
    return b.view(shape)


def fused_bias_act_ref(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "lrelu",
                       alpha: float | None = None, gain: float | None = None,
                       dim: int = 1) -> torch.Tensor:
    """Reference path. ``x``: any shape with channels on ``dim``; ``b``: [C] or None."""
    _check(act)
    fn, default_alpha, default_gain = ACTIVATIONS[act]
    alpha = default_alpha if alpha is None else alpha
    gain = default_gain if gain is None else gain
    if b is not None:
        x = x + _broadcast_bias(x, b.to(x.dtype), dim)
    x = fn(x, alpha)
    if gain != 1:
        x = x * gain
    return x


def fused_bias_act(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "lrelu",
                   alpha: float | None = None, gain: float | None = None,
                   dim: int = 1) -> torch.Tensor:
    """``act(x + b) * gain`` with ``b`` ([C]) broadcast along ``dim`` of ``x``.

    Defaults per activation: lrelu alpha 0.2 gain sqrt(2); relu gain sqrt(2); linear gain 1.
    Differentiable to second order on every backend.
    """
    _check(act)
    if x.is_cuda and extensions.use_cuda("bias_act"):
        from . import bias_act_cuda
        fn, default_alpha, default_gain = ACTIVATIONS[act]
        return bias_act_cuda.bias_act(x, b, act, default_alpha if alpha is None else alpha,
                                       default_gain if gain is None else gain, dim)
    return fused_bias_act_ref(x, b, act, alpha, gain, dim)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None,
                     negative_slope: float = 0.2, scale: float = SQRT2) -> torch.Tensor:
    """StyleGAN2's ``leaky_relu(x + bias, negative_slope) * scale``; bias on dim 1."""
    return fused_bias_act(x, bias, "lrelu", negative_slope, scale, dim=1)
