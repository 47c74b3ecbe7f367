"""upfirdn2d: upsample (zero insertion), pad, FIR-filter, downsample — per channel.

For ``x`` [N, C, H, W] and a 2-D filter ``f`` [kh, kw] the output is
``[N, C, (H*up_y + py0 + py1 - kh) // down_y + 1, (W*up_x + px0 + px1 - kw) // down_x + 1]``.
Negative padding crops.  The filter is applied as a true convolution (flipped), as in
StyleGAN2.  ``up``/``down`` take an int or (x, y); ``pad`` takes (p0, p1) for both axes
or (x0, x1, y0, y1).
"""
from __future__ import annotations

import torch

from . import extensions
from .upfirdn2d_ref import params, upfirdn2d_ref


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up=1, down=1, pad=(0, 0)) -> torch.Tensor:
    """Upsample, pad, filter, downsample ``x`` [N, C, H, W] with filter ``f`` [kh, kw].

    CUDA tensors use our kernel when it is built and enabled; everything else uses
    :func:`upfirdn2d_ref`.
    """
    if x.is_cuda and extensions.use_cuda("upfirdn2d"):
        from . import upfirdn2d_cuda
        f, upx, upy, downx, downy, pad4 = params(x, f, up, down, pad)
        return upfirdn2d_cuda.upfirdn2d(x, f, (upx, upy), (downx, downy), pad4)
    return upfirdn2d_ref(x, f, up, down, pad)
