"""3×3 convolutions by Winograd's minimal filtering F(4×4, 3×3), for CPU inference.

A 'same' 3×3 correlation (stride 1, zero padding 1) computes each 4×4 block of outputs from
the 6×6 input tile around it as ``Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A``: in the transformed domain
the 36 tile components are independent, so the channel mixing becomes 36 matrix products
``[tiles, C_in] @ [C_in, C_out]`` with 36 multiplications per 16 outputs instead of 144.
oneDNN has no Winograd path on CPUs without AVX-512, and on those it is deprecated; here the
transforms are small matrix products too, so everything runs on the CPU's GEMM.

The output is computed in bands of tile rows sized so that the transformed tiles stay in the
CPU's caches, and the StyleGAN2 epilogue (demodulation, noise + bias, leaky ReLU·√2) is
applied to each band while it is hot.  In exact arithmetic the result equals
:func:`torch.nn.functional.conv2d`; in float32 the relative error is a few 1e-6 (the
transforms use the interpolation points 0, ±1, ±2, which are exact in binary).

:func:`conv3x3` runs the transforms in our C++ extension (``op/winograd_cpu.cpp``, built on
first use by :mod:`blendgan.ops.extensions`: one vectorised pass per stage instead of several
PyTorch memory passes, 1.4-1.8x faster per layer) and falls back to :func:`conv3x3_ref`, the
same computation in PyTorch ops, where it cannot be built or ``BLENDGAN_OPS=ref``.
"""
from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from . import extensions
from .bias_act import SQRT2

# F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray, 2016).
_BT = ((4, 0, -5, 0, 1, 0),
       (0, -4, -4, 1, 1, 0),
       (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0),
       (0, 2, -1, -2, 1, 0),
       (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0),
      (-1 / 6, -1 / 6, -1 / 6),
      (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6),
      (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0),
       (0, 1, -1, 2, -2, 0),
       (0, 1, 1, 4, 4, 0),
       (0, 1, -1, 8, -8, 1))
TILE = 4          # outputs per tile side
WINDOW = 6        # inputs per tile side (TILE + 3 - 1)
BAND_BYTES = 6 << 20   # transformed tiles per band: a few MiB, so a band's stages stay in cache
MIN_BAND_TILES = 256   # ... but at least this many tiles, for efficient products


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """Correlation weights [C_out, C_in, 3, 3] -> transformed weights [36, C_in, C_out]
    (component ``a·6 + b`` of ``G g Gᵀ``), in the weight's dtype (in float32 the rounded 1/6
    and 1/24 of G add ~1e-8 relative error, far below the transform's own)."""
    if weight.ndim != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"expected [C_out, C_in, 3, 3] weights, got {tuple(weight.shape)}")
    g = torch.tensor(_G, dtype=weight.dtype, device=weight.device)
    taps = weight.permute(2, 3, 1, 0).reshape(3, 3, -1)                 # [3 (i), 3 (j), C_in·C_out]
    rows = torch.tensordot(g, taps, dims=([1], [0]))                    # [6 (a), 3 (j), ...]
    u = torch.tensordot(g, rows, dims=([1], [1]))                       # [6 (b), 6 (a), ...]
    return u.transpose(0, 1).reshape(WINDOW * WINDOW, weight.shape[1], weight.shape[0]).contiguous()


def transform_weight_up(weight: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's upsampling convolution, ``blur(conv_transpose2d(x, Wᵀ, stride=2))``, as
    four 3×3 'same' correlations on the input grid (one per output phase), transformed.

    ``weight`` [C_out, C_in, 3, 3] (the correlation layout of ``ModulatedConv2d``), ``blur``
    the [4, 4] FIR filter applied with padding (1, 1) -> [36, C_in, 4·C_out], phase
    ``(py, px)`` (output pixel ``(2m + py, 2n + px)``) in columns ``(2·py + px)·C_out ...``.
    The transposed convolution followed by the blur is one 6×6 filter on the zero-stuffed
    grid, ``h = W ∗ blur`` (full convolution); phase ``(py, px)`` reads taps ``h[py::2, px::2]``
    of it, flipped into correlation order.
    """
    if weight.ndim != 4 or weight.shape[2:] != (3, 3) or blur.shape != (4, 4):
        raise ValueError(f"expected [C_out, C_in, 3, 3] weights and a [4, 4] blur, got "
                         f"{tuple(weight.shape)} and {tuple(blur.shape)}")
    cout, cin = weight.shape[:2]
    w = weight.double().reshape(cout * cin, 1, 3, 3)
    # full convolution W ∗ blur: pad by 3 and correlate with the flipped filter -> [6, 6]
    h = torch.nn.functional.conv2d(torch.nn.functional.pad(w, (3, 3, 3, 3)),
                                   blur.double().flip([0, 1])[None, None]).view(cout, cin, 6, 6)
    phases = [transform_weight(h[:, :, py::2, px::2].flip([2, 3])) for py in (0, 1) for px in (0, 1)]
    return torch.cat(phases, dim=2).to(weight.dtype).contiguous()


class TransformedWeight:
    """A transformed copy of a weight, made on first use and remade when the weight changes.

    Kept beside a module (not a buffer: derived, never saved).  It holds an alias of the
    weight it was made from, so that storage stays alive and a new weight cannot reuse its
    address; the weight's version counter catches in-place writes (``load_state_dict``,
    optimiser steps)."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.transform = transform
        self._source: torch.Tensor | None = None
        self._version = -1
        self._value: torch.Tensor | None = None

    def get(self, weight: torch.Tensor) -> torch.Tensor:
        weight = weight.detach()
        # Inference tensors (a model built under torch.inference_mode) have no version
        # counter: they are recognised by storage alone, so in-place writes to them go unseen.
        version = None if weight.is_inference() else weight._version
        src = self._source
        if src is None or src.data_ptr() != weight.data_ptr() or src.dtype != weight.dtype \
                or src.device != weight.device or self._version != version:
            with torch.no_grad():
                self._value = self.transform(weight)
            self._source, self._version = weight, version
        return self._value

    def __deepcopy__(self, memo: dict) -> "TransformedWeight":
        """A copy starts empty (the transformed weight is derived, remade on first use); its
        transform is copied along, so a bound method follows the copied module."""
        return TransformedWeight(copy.deepcopy(self.transform, memo))

    def clear(self) -> None:
        """Drop the transformed copy (e.g. when the module moves to another device)."""
        self._source = self._value = None
        self._version = -1


_switch = threading.local()


@contextmanager
def direct_convolutions() -> Iterator[None]:
    """Within (in this thread): the layers take their direct, plain-PyTorch convolutions, as
    :func:`supports` answers False.  For tracing graphs that must hold standard operators
    only (ONNX export); nests."""
    depth = getattr(_switch, "depth", 0)
    _switch.depth = depth + 1
    try:
        yield
    finally:
        _switch.depth = depth


def _fits(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.ndim == 4
            and x.shape[2] % TILE == 0 and x.shape[3] % TILE == 0)


def supports(x: torch.Tensor) -> bool:
    """Whether the layers take the Winograd path for ``x``: a float32 CPU tensor
    [N, C, H, W] with H and W multiples of 4, outside :func:`direct_convolutions`."""
    return not getattr(_switch, "depth", 0) and _fits(x)


def _check(x: torch.Tensor, weight_t: torch.Tensor, noise: torch.Tensor | None, up: int) -> tuple[int, int]:
    """Validate the arguments of :func:`conv3x3`; returns (C_out, tile rows per band)."""
    if not _fits(x):
        raise ValueError(f"conv3x3 needs a float32 CPU tensor [N, C, H, W] with H, W multiples of {TILE}, "
                         f"got {x.dtype} {tuple(x.shape)} on {x.device}")
    if up not in (1, 2):
        raise ValueError(f"up must be 1 or 2, got {up}")
    n, cin, h, w = x.shape
    if weight_t.shape[:2] != (WINDOW * WINDOW, cin) or weight_t.shape[2] % (up * up):
        raise ValueError(f"weight_t must be [36, {cin}, {up * up}·C_out], got {tuple(weight_t.shape)}")
    if noise is not None and (noise.ndim != 4 or noise.shape[0] not in (1, n) or noise.shape[1] != 1
                              or noise.shape[2:] != (up * h, up * w)):
        raise ValueError(f"noise must be [{n} or 1, 1, {up * h}, {up * w}], got {tuple(noise.shape)}")
    # Bands of tile rows across the batch: enough tiles for an efficient product (the
    # weights are read once per band), few enough for the stages to stay in cache.
    tiles = max(MIN_BAND_TILES, BAND_BYTES // (WINDOW * WINDOW * 4 * max(cin, weight_t.shape[2])))
    rows = max(1, min(h // TILE, -(-tiles // max(1, n * (w // TILE)))))
    return weight_t.shape[2] // (up * up), rows


def _empty_output(x: torch.Tensor, cout: int, up: int) -> torch.Tensor:
    """The [0, C_out, up·H, up·W] result of an empty batch ``x`` [0, C_in, H, W]."""
    return x.new_empty(0, cout, up * x.shape[2], up * x.shape[3]).contiguous(memory_format=torch.channels_last)


@torch.compiler.disable  # eager by design: a traced copy would unroll every band of every shape
def conv3x3(x: torch.Tensor, weight_t: torch.Tensor, in_scale: torch.Tensor | None = None,
            out_scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
            noise: torch.Tensor | None = None, lrelu: bool = False, up: int = 1) -> torch.Tensor:
    """``act(conv(x · in_scale) · out_scale + noise + bias)`` by F(4×4, 3×3), where ``conv`` is a
    'same' 3×3 correlation (``weight_t`` from :func:`transform_weight`, ``up=1``) or StyleGAN2's
    blurred 2× upsampling convolution (from :func:`transform_weight_up`, ``up=2``).

    ``x`` [N, C_in, H, W] (float32, CPU, H and W multiples of 4; any memory format);
    ``weight_t`` [36, C_in, up²·C_out]; ``in_scale`` [N, C_in] and ``out_scale`` [N, C_out]
    per-sample channel scales (StyleGAN2's modulation and demodulation); ``bias`` [C_out];
    ``noise`` [N or 1, 1, up·H, up·W] added to every channel; ``lrelu`` applies
    ``leaky_relu(·, 0.2)·√2``.  Returns [N, C_out, up·H, up·W] in channels_last.

    Inference only: no gradients flow through it (the models take their direct paths when
    autograd records).
    """
    cout, rows = _check(x, weight_t, noise, up)
    if x.shape[0] == 0:
        return _empty_output(x, cout, up)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (x, weight_t, in_scale, out_scale, bias, noise)):
        raise RuntimeError("winograd.conv3x3 is for inference: call it under torch.no_grad() or "
                           "torch.inference_mode()")
    if not extensions.use_native_cpu("winograd"):
        return conv3x3_ref(x, weight_t, in_scale, out_scale, bias, noise, lrelu, up)
    n = x.shape[0]
    native = extensions.get_module("winograd")
    return native.conv3x3(
        x.contiguous(memory_format=torch.channels_last), weight_t.float().contiguous(),
        None if in_scale is None else in_scale.float().reshape(n, -1).contiguous(),
        None if out_scale is None else out_scale.float().reshape(n, -1).contiguous(),
        None if bias is None else bias.float().reshape(-1).contiguous(),
        None if noise is None else noise.float().flatten(1, 2).contiguous(),
        lrelu, up, rows)


def conv3x3_ref(x: torch.Tensor, weight_t: torch.Tensor, in_scale: torch.Tensor | None = None,
                out_scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, lrelu: bool = False, up: int = 1) -> torch.Tensor:
    """:func:`conv3x3` in PyTorch ops: the transforms as small matrix products."""
    cout, rows = _check(x, weight_t, noise, up)
    if x.shape[0] == 0:
        return _empty_output(x, cout, up)
    n, cin, h, w = x.shape
    th, tw = h // TILE, w // TILE
    wp = w + 2
    bt = torch.tensor(_BT, dtype=x.dtype)
    at = torch.tensor(_AT, dtype=x.dtype)
    xh = x.permute(0, 2, 3, 1)                                   # NHWC view [N, H, W, C_in]
    out = torch.empty(n, cout, up * h, up * w, dtype=x.dtype, memory_format=torch.channels_last)
    oh = out.permute(0, 2, 3, 1)                                 # NHWC view [N, up·H, up·W, C_out]
    noise_h = None if noise is None else noise.permute(0, 2, 3, 1)   # [N or 1, up·H, up·W, 1]
    s = None if in_scale is None else in_scale.reshape(n, 1, 1, cin)
    d = None if out_scale is None else out_scale.reshape(n, 1, 1, 1, 1, 1, 1, cout)
    # zero-bordered input rows [N, 4·rows + 2, W + 2, C_in], reused for every band
    band = x.new_zeros(n, TILE * rows + 2, wp, cin)
    for r0 in range(0, th, rows):
        r = min(rows, th - r0)
        y0 = TILE * r0                                           # first input row of the band
        # 1. the band's input rows y0-1 .. y0+4r (zeros outside the image), modulated
        lo, hi = max(y0 - 1, 0), min(y0 + TILE * r + 1, h)
        if r < rows:
            band.zero_()
        else:
            band[:, 0].zero_()
            band[:, -1].zero_()
        dst = band[:, lo - (y0 - 1):hi - (y0 - 1), 1:w + 1]
        if s is None:
            dst.copy_(xh[:, lo:hi])
        else:
            torch.mul(xh[:, lo:hi], s, out=dst)
        # 2. input transform Bᵀ d B: rows, then columns -> V [36, N·r·tw, C_in]
        g1 = torch.stack([band[:, k:k + TILE * r:TILE] for k in range(WINDOW)])        # [6, N, r, W+2, C]
        u1 = (bt @ g1.view(WINDOW, -1)).view(WINDOW, n, r, wp, cin)
        g2 = torch.stack([u1[..., k:k + TILE * tw:TILE, :] for k in range(WINDOW)], 1)  # [6, 6, N, r, tw, C]
        v = (bt @ g2.view(WINDOW, WINDOW, -1)).view(WINDOW * WINDOW, n * r * tw, cin)
        # 3. channel mixing: 36 products [N·r·tw, C_in] @ [C_in, up²·C_out]
        m = torch.bmm(v, weight_t)
        # 4. output transform Aᵀ M A: columns, then rows -> [4, 4, N, r, tw, up, up, C_out]
        m1 = at @ m.view(WINDOW, WINDOW, -1)                                            # [6, 4, ...]
        y = (at @ m1.view(WINDOW, -1)).view(TILE, TILE, n, r, tw, up, up, cout)
        y = y.permute(2, 3, 0, 5, 4, 1, 6, 7)                    # [N, r, 4, up, tw, 4, up, C_out]
        # 5. epilogue into the band's output rows (still in cache): scale, noise + bias, act
        rows_out = slice(up * y0, up * (y0 + TILE * r))
        o = oh[:, rows_out].view(n, r, TILE, up, tw, TILE, up, cout)
        if d is None:
            o.copy_(y)
        else:
            torch.mul(y, d, out=o)
        if noise_h is not None:
            offset = noise_h[:, rows_out] if bias is None else noise_h[:, rows_out] + bias   # [N|1, rows, W', C|1]
            o.add_(offset.reshape(offset.shape[0], r, TILE, up, tw, TILE, up, offset.shape[-1]))
        elif bias is not None:
            o.add_(bias)
        if lrelu:
            torch.nn.functional.leaky_relu_(o, 0.2).mul_(SQRT2)
    return out
