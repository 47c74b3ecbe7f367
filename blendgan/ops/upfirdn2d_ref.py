"""The reference upfirdn2d in plain PyTorch: any device, any float dtype, autograd to any order.

Shapes and conventions as in :mod:`blendgan.ops.upfirdn2d`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    vx, vy = v
    return int(vx), int(vy)


def _pad4(pad) -> tuple[int, int, int, int]:
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return tuple(int(p) for p in pad)
    raise ValueError(f"pad must have 2 or 4 entries, got {pad!r}")


def params(x: torch.Tensor, f: torch.Tensor, up, down, pad):
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {tuple(x.shape)}")
    if f.ndim == 1:
        f = f[:, None] * f[None, :]
    if f.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 1-D or 2-D filter, got {tuple(f.shape)}")
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    if min(upx, upy, downx, downy) < 1:
        raise ValueError("up and down must be >= 1")
    return f, upx, upy, downx, downy, _pad4(pad)


def upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, up=1, down=1, pad=(0, 0)) -> torch.Tensor:
    """Reference path in plain PyTorch (any device, any float dtype, autograd to any order)."""
    f, upx, upy, downx, downy, (px0, px1, py0, py1) = params(x, f, up, down, pad)
    n, c, h, w = x.shape
    weight = f.flip([0, 1]).to(x.device, x.dtype)[None, None].expand(c, 1, *f.shape)
    if upx == upy == 1 and px0 == px1 >= 0 and py0 == py1 >= 0:
        # plain blur / blur-and-decimate: let the convolution pad and stride (no copies)
        return F.conv2d(x, weight, stride=(downy, downx), padding=(py0, px0), groups=c)
    # 1. upsample by inserting (up - 1) zeros after every sample
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    # 2. pad with zeros; negative amounts crop
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    # 3. FIR filter each channel (true convolution: correlate with the flipped filter), and
    # 4. downsample by keeping every down-th sample (the convolution's stride)
    return F.conv2d(x, weight, stride=(downy, downx), groups=c)
