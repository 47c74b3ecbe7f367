"""Autograd (to any order) and torch.compile support for our upfirdn2d kernel.

One custom op, ``blendgan::upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1)``
registered with :func:`torch.library.custom_op`:

* ``x`` [N, C, H, W], ``f`` [kh, kw] -> [N, C, oh, ow] with
  ``oh = (H*upy + py0 + py1 - kh) // downy + 1`` and ``ow = (W*upx + px0 + px1 - kw) // downx + 1``.

Backward.  Per axis, ``out[o] = sum_s x[s] * f[k-1 - (s*up + p0 - o*down)]``, so
``grad_x[s] = sum_o g[o] * f[k-1 - s*up - p0 + o*down]``, which is upfirdn2d of ``g``
with the flipped filter, up and down swapped and the pads

    p0' = k - p0 - 1,      p1' = H*up - o_size*down + p0 - up + 1

(p1' makes the result exactly H long).  That op is linear in ``g``; applying the same
rule to it gives back the forward op (same pads up to a harmless change of p1), so the
backward is the op itself and gradients of every order come for free.  The filter is
treated as a constant: when ``f`` requires grad, :func:`upfirdn2d` uses the reference
path instead so its gradient is correct.

CUDA tensors run the ``blendgan_upfirdn2d`` extension (built lazily by
:mod:`blendgan.ops.extensions`; nothing is compiled at import); other tensors run
:func:`blendgan.ops.upfirdn2d_ref.upfirdn2d_ref`, so the autograd rules and the fake
implementation used by torch.compile can be tested on CPU.
"""
from typing import Tuple

import torch

from . import extensions
from .upfirdn2d_ref import upfirdn2d_ref


def _cuda_module():
    return extensions.require_module("upfirdn2d")


def output_size(h, w, kh, kw, upx, upy, downx, downy, px0, px1, py0, py1):
    """(oh, ow) of upfirdn2d for input (h, w) and filter (kh, kw)."""
    return (h * upy + py0 + py1 - kh) // downy + 1, (w * upx + px0 + px1 - kw) // downx + 1


@torch.library.custom_op("blendgan::upfirdn2d", mutates_args=())
def upfirdn2d_op(x: torch.Tensor, f: torch.Tensor, upx: int, upy: int, downx: int, downy: int,
                  px0: int, px1: int, py0: int, py1: int) -> torch.Tensor:
    """x [N, C, H, W], f [kh, kw] -> [N, C, oh, ow] (see module docstring)."""
    if x.is_cuda:
        return _cuda_module().upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1)
    return upfirdn2d_ref(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1)).contiguous()


@upfirdn2d_op.register_fake
def _(x, f, upx, upy, downx, downy, px0, px1, py0, py1):
    n, c, h, w = x.shape
    kh, kw = f.shape
    oh, ow = output_size(h, w, kh, kw, upx, upy, downx, downy, px0, px1, py0, py1)
    torch._check(oh >= 1, lambda: "upfirdn2d: output would be empty")
    torch._check(ow >= 1, lambda: "upfirdn2d: output would be empty")
    return x.new_empty((n, c, oh, ow))


def _setup(ctx, inputs, output):
    x, f, upx, upy, downx, downy, px0, px1, py0, py1 = inputs
    ctx.save_for_backward(f)
    ctx.args = (upx, upy, downx, downy, px0, py0)
    ctx.in_hw = (x.shape[2], x.shape[3])
    ctx.out_hw = (output.shape[2], output.shape[3])


def _backward(ctx, grad):
    (f,) = ctx.saved_tensors
    upx, upy, downx, downy, px0, py0 = ctx.args
    h, w = ctx.in_hw
    oh, ow = ctx.out_hw
    kh, kw = f.shape
    grad_x = None
    if ctx.needs_input_grad[0]:
        gpx0 = kw - px0 - 1
        gpx1 = w * upx - ow * downx + px0 - upx + 1
        gpy0 = kh - py0 - 1
        gpy1 = h * upy - oh * downy + py0 - upy + 1
        grad_x = upfirdn2d_op(grad, f.flip([0, 1]), downx, downy, upx, upy, gpx0, gpx1, gpy0, gpy1)
    return grad_x, None, None, None, None, None, None, None, None, None


torch.library.register_autograd("blendgan::upfirdn2d", _backward, setup_context=_setup)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: Tuple[int, int] = (1, 1),
              down: Tuple[int, int] = (1, 1), pad: Tuple[int, int, int, int] = (0, 0, 0, 0)) -> torch.Tensor:
    """Upsample, pad, FIR-filter, downsample through our kernel; differentiable to any order.

    ``x`` [N, C, H, W] (float16/bfloat16/float32/float64); ``f`` [kh, kw];
    ``up``/``down`` = (x, y) factors; ``pad`` = (px0, px1, py0, py1), negative crops.
    Returns a contiguous [N, C, oh, ow].
    """
    if x.ndim != 4 or f.ndim != 2:
        raise ValueError(f"upfirdn2d expects x [N, C, H, W] and f [kh, kw], got {tuple(x.shape)} "
                         f"and {tuple(f.shape)}")
    upx, upy = (int(v) for v in up)
    downx, downy = (int(v) for v in down)
    px0, px1, py0, py1 = (int(v) for v in pad)
    if f.requires_grad and torch.is_grad_enabled():
        # Our op treats the filter as a constant; keep its gradient exact.
            return upfirdn2d_ref(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1))
    if f.device != x.device:
        f = f.to(x.device)
    return upfirdn2d_op(x, f, upx, upy, downx, downy, px0, px1, py0, py1)
