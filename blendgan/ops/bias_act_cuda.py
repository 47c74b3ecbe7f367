"""Autograd (to any order) and torch.compile support for our fused bias + activation kernel.

Two custom ops, registered with :func:`torch.library.custom_op`:

* ``blendgan::bias_act(x, b, act, alpha, gain, dim) -> y = act(x + b) * gain``
* ``blendgan::bias_act_grad(grad, ref, ref_bias, act, alpha, gain, dim, mode)
  -> grad * gain * act'(z)`` with ``z`` the pre-activation, recovered from ``ref``:

  ======  =====================  ==============================================
  mode    ``ref``                slope ``act'(z)``
  ======  =====================  ==============================================
  0       unused (linear)        1
  1       the output ``y``       1 if y > 0 else alpha  (needs gain > 0, alpha >= 0)
  2       the input ``x``        1 if x + ref_bias > 0 else alpha
  ======  =====================  ==============================================

For linear/relu/lrelu the slope is piecewise constant, so the gradient op is linear in
``grad`` with zero derivative w.r.t. ``ref``: its backward is itself, which gives
gradients of every order (R1 / path-length penalties need the second).  The gradient
w.r.t. ``b`` is the sum of ``grad_x`` over all dims but ``dim``.

CUDA tensors run the kernels of the ``blendgan_bias_act`` extension (built lazily by
:mod:`blendgan.ops.extensions`; nothing is compiled at import).  Other tensors run an
equivalent PyTorch computation, so the autograd formulas and the fake (meta)
implementations used by torch.compile can be tested on CPU.

Shapes: ``x`` any shape with ``C = x.shape[dim]``; ``b`` [C] or None; ``y``, ``grad``,
``ref`` shape of ``x``; ``ref_bias`` [C] or None.
"""
import math
from typing import Optional

import torch

from . import extensions

ACT_IDS = {"linear": 0, "relu": 1, "lrelu": 2}
MODE_NONE, MODE_OUTPUT, MODE_PREACT = 0, 1, 2


def _cuda_module():
    return extensions.require_module("bias_act")


def _bias_view(b: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = b.shape[0]
    return b.view(shape)


def _slope_positive(ref: Optional[torch.Tensor], ref_bias: Optional[torch.Tensor],
                    dim: int, mode: int) -> torch.Tensor:
    z = ref
    if mode == MODE_PREACT and ref_bias is not None:
        z = ref + _bias_view(ref_bias, ref.ndim, dim)
    return z > 0


# ---- forward op ------------------------------------------------------------------------------

@torch.library.custom_op("blendgan::bias_act", mutates_args=())
def bias_act_op(x: torch.Tensor, b: Optional[torch.Tensor], act: int, alpha: float,
                 gain: float, dim: int) -> torch.Tensor:
    """``act(x + b) * gain``; x: any shape, b: [C] on ``dim`` or None -> shape of x."""
    if x.is_cuda:
        return _cuda_module().forward(x, b, act, alpha, gain, dim)
    z = x if b is None else x + _bias_view(b, x.ndim, dim)
    if act == ACT_IDS["relu"]:
        z = torch.relu(z)
    elif act == ACT_IDS["lrelu"]:
        z = torch.nn.functional.leaky_relu(z, alpha)
    return (z * gain).contiguous()


@bias_act_op.register_fake
def _(x, b, act, alpha, gain, dim):
    return x.new_empty(x.shape)


def _backward_mode(act: int, alpha: float, gain: float) -> int:
    if act == ACT_IDS["linear"]:
        return MODE_NONE
    if gain > 0 and (act == ACT_IDS["relu"] or alpha >= 0):
        return MODE_OUTPUT  # sign(y) == sign(z): no need to keep the pre-activation
    return MODE_PREACT


def _bias_act_setup(ctx, inputs, output):
    x, b, act, alpha, gain, dim = inputs
    mode = _backward_mode(act, alpha, gain)
    if mode == MODE_OUTPUT:
        ctx.save_for_backward(output, None)
    elif mode == MODE_PREACT:
        ctx.save_for_backward(x, b)
    else:
        ctx.save_for_backward(None, None)
    ctx.args = (act, alpha, gain, dim, mode)
    ctx.has_bias = b is not None


def _bias_act_backward(ctx, grad):
    ref, ref_bias = ctx.saved_tensors
    act, alpha, gain, dim, mode = ctx.args
    grad_x = grad_b = None
    if ctx.needs_input_grad[0] or (ctx.has_bias and ctx.needs_input_grad[1]):
        grad_x = bias_act_grad_op(grad, ref, ref_bias, act, alpha, gain, dim, mode)
        if ctx.has_bias and ctx.needs_input_grad[1]:
            grad_b = grad_x.sum([d for d in range(grad_x.ndim) if d != dim])
    return grad_x, grad_b, None, None, None, None


# ---- gradient op -----------------------------------------------------------------------------

@torch.library.custom_op("blendgan::bias_act_grad", mutates_args=())
def bias_act_grad_op(grad: torch.Tensor, ref: Optional[torch.Tensor],
                      ref_bias: Optional[torch.Tensor], act: int, alpha: float, gain: float,
                      dim: int, mode: int) -> torch.Tensor:
    """``grad * gain * act'(z)``; grad/ref: shape of x, ref_bias: [C] or None -> shape of x."""
    if grad.is_cuda:
        return _cuda_module().backward(grad, ref, ref_bias, act, alpha, gain, dim, mode)
    if mode == MODE_NONE or act == ACT_IDS["linear"]:
        return grad * gain
    positive = _slope_positive(ref, ref_bias, dim, mode)
    negative_slope = 0.0 if act == ACT_IDS["relu"] else alpha
    return torch.where(positive, grad * gain, grad * (gain * negative_slope))


@bias_act_grad_op.register_fake
def _(grad, ref, ref_bias, act, alpha, gain, dim, mode):
    return grad.new_empty(grad.shape)


def _bias_act_grad_setup(ctx, inputs, output):
    grad, ref, ref_bias, act, alpha, gain, dim, mode = inputs
    ctx.save_for_backward(ref, ref_bias)
    ctx.args = (act, alpha, gain, dim, mode)


def _bias_act_grad_backward(ctx, grad_grad):
    # Linear in `grad`, piecewise constant in `ref`/`ref_bias` (zero derivative).
    ref, ref_bias = ctx.saved_tensors
    act, alpha, gain, dim, mode = ctx.args
    out = None
    if ctx.needs_input_grad[0]:
        out = bias_act_grad_op(grad_grad, ref, ref_bias, act, alpha, gain, dim, mode)
    return out, None, None, None, None, None, None, None


torch.library.register_autograd("blendgan::bias_act", _bias_act_backward, setup_context=_bias_act_setup)
torch.library.register_autograd("blendgan::bias_act_grad", _bias_act_grad_backward,
                                setup_context=_bias_act_grad_setup)


# ---- public entry ----------------------------------------------------------------------------

def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, act: str = "lrelu",
             alpha: float = 0.2, gain: float = math.sqrt(2.0), dim: int = 1) -> torch.Tensor:
    """``act(x + b) * gain`` through our kernel; differentiable to any order.

    ``x``: any shape (float16/bfloat16/float32/float64) with ``C = x.shape[dim]``;
    ``b``: [C] or None (cast to ``x.dtype``); ``act`` in linear/relu/lrelu (``alpha`` is
    the lrelu negative slope).  Returns a contiguous tensor of ``x``'s shape.
    """
    if act not in ACT_IDS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACT_IDS)}")
    if x.ndim == 0:
        raise ValueError("bias_act expects x with at least one dimension")
    dim = dim % x.ndim
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {tuple(b.shape)} does not match dim {dim} of x "
                             f"{tuple(x.shape)}")
        if b.dtype != x.dtype:
            b = b.to(x.dtype)
    return bias_act_op(x, b, ACT_IDS[act], float(alpha), float(gain), dim)
