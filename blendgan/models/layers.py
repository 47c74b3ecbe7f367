"""StyleGAN2 building blocks with the official (rosinality / BlendGAN) parameter names.

Equalized learning rate: parameters are stored unscaled and multiplied by
``1/sqrt(fan_in)`` (times ``lr_mul``) in the forward pass, so the state-dict values of the
official checkpoints load unchanged.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import fused_leaky_relu, upfirdn2d, winograd

BLUR_KERNEL = (1, 3, 3, 1)
SQRT2 = math.sqrt(2.0)
WINOGRAD_MIN_SIZE = 8  # smallest feature map for the Winograd path in CPU inference
WINOGRAD_MIN_CHANNELS = 64  # plain (unmodulated) convolutions: fewest input channels
WINOGRAD_MIN_SIZE_PLAIN = 32  # ... and smallest map (below, the time saved is small for the memory the weights take)


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Normalised 2-D FIR filter from a 1-D (separable) or 2-D list: sums to 1."""
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format


class _HoldsWinogradWeight(nn.Module):
    """A module keeping a :class:`winograd.TransformedWeight` as ``_winograd``: moving or
    casting the module drops the transformed copy of the old weight instead of keeping it
    alive until the next call."""

    def _apply(self, fn, *args, **kwargs):
        self._winograd.clear()
        return super()._apply(fn, *args, **kwargs)


class WinogradConv2d(_HoldsWinogradWeight, nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state-dict keys) whose CPU float32 inference takes
    the Winograd F(4x4, 3x3) path for 'same' 3x3 convolutions with stride 1, at least
    :data:`WINOGRAD_MIN_CHANNELS` input channels and maps from :data:`WINOGRAD_MIN_SIZE_PLAIN`
    up: 1.4-2.5x faster than oneDNN's direct convolution there on a 2-core AVX2 CPU
    (``tools/benchmark_winograd.py --encoders``; 0.4x for the 3-channel input layers).
    The 512-channel layers on 16x16 maps also gain ~2x but save little time for the memory
    their transformed weights take (4x the conv weights, 38 MB each), so they stay direct.
    Everything else, training and ``torch.compile`` included, is ``nn.Conv2d``'s own forward."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._winograd = winograd.TransformedWeight(winograd.transform_weight)

    def uses_winograd(self, x: torch.Tensor) -> bool:
        return (self.kernel_size == (3, 3) and self.stride == (1, 1) and self.padding == (1, 1)
                and self.dilation == (1, 1) and self.groups == 1 and self.padding_mode == "zeros"
                and self.in_channels >= WINOGRAD_MIN_CHANNELS and min(x.shape[-2:]) >= WINOGRAD_MIN_SIZE_PLAIN
                and not torch.is_grad_enabled() and winograd.supports(x) and not torch.compiler.is_compiling())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_winograd(x):
            return super().forward(x)
        return winograd.conv3x3(x, self._winograd.get(self.weight), bias=self.bias)


class PixelNorm(nn.Module):
    """Normalise each vector to unit RMS: ``x / sqrt(mean(x^2) + 1e-8)`` over dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalized-lr linear layer; ``activation='fused_lrelu'`` adds the fused leaky ReLU.

    ``x`` [N, in_dim] -> [N, out_dim].  Stored weight is ``randn / lr_mul``; the effective
    weight is ``weight * lr_mul / sqrt(in_dim)`` and the effective bias ``bias * lr_mul``.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Scale the [N, out] product rather than the [out, in] weight: same maths, and the
        # style encoder's 610304-wide layer never materialises a scaled copy of its weight.
        out = F.linear(x, self.weight) * self.scale
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(out, bias)
        return out if bias is None else out + bias

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, " \
               f"activation={self.activation}"


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias followed by ``leaky_relu(., 0.2) * sqrt(2)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass filter via upfirdn2d; ``kernel`` [k, k] is a persistent buffer."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x upsampling with the FIR filter: [N, C, H, W] -> [N, C, 2H, 2W]."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class ModulatedConv2d(_HoldsWinogradWeight):
    """Style-modulated convolution (StyleGAN2), optionally with 2x upsampling.

    ``x`` [N, in, H, W], ``style`` [N, style_dim] -> [N, out, H', W'] (H' = 2H with
    ``upsample``).  Weight [1, out, in, k, k] is scaled per sample by the modulation
    ``A(style)`` [N, in] and, with ``demodulate``, renormalised per output channel.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1),
                             upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self._winograd = winograd.TransformedWeight(self._transform_weight)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.modulation(style)  # [N, in]
        # one face whose inputs are optimised against frozen weights (inversion): the shared
        # form needs no gradient of the per-sample weight, half the work of the grouped one
        if n == 1 and not (torch.is_grad_enabled() and not self.weight.requires_grad):
            return self.forward_grouped(x, s)
        return self.forward_shared(x, s)

    def forward_grouped(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Per-sample weights, one grouped convolution (the official formulation)."""
        n, c, h, w = x.shape
        k = self.kernel_size
        weight = self.scale * self.weight * s.view(n, 1, c, 1, 1)  # [N, out, in, k, k]
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)  # [N, out]
            weight = weight * demod.view(n, self.out_channel, 1, 1, 1)
        x = x.reshape(1, n * c, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * c, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=n)
            out = out.view(n, self.out_channel, *out.shape[2:])
            return self.blur(out)
        weight = weight.reshape(n * self.out_channel, c, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=n)
        return out.view(n, self.out_channel, *out.shape[2:])

    def forward_shared(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Same maths for a batch: modulate activations, shared conv, demodulate outputs.

        ``conv(x * s, W) * d == conv(x, W * s * d)`` for per-sample [in] scales ``s`` and
        per-sample [out] scales ``d``, so one dense convolution serves the whole batch.
        """
        out, demod = self.forward_parts(x, s)
        return out if demod is None else out * demod

    def forward_parts(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The shared-weight convolution (blurred when upsampling) and the demodulation
        factors [N, out, 1, 1] (None without demodulation), kept apart so that callers can
        fuse the scaling with what follows.  ``s``: modulation [N, in]."""
        n = x.shape[0]
        weight = self.weight[0] * self.scale  # [out, in, k, k]
        x = x * s.view(n, self.in_channel, 1, 1)
        if self.upsample:
            # demodulation is a per-channel scale, so it commutes with the (per-channel) blur
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        return out, self.demodulation(s)

    def demodulation(self, s: torch.Tensor) -> torch.Tensor | None:
        """Demodulation factors [N, out, 1, 1] for modulation ``s`` [N, in] (None without
        demodulation): ``rsqrt(sum_{i,k} (W[o,i,k]·scale·s[n,i])^2 + 1e-8)``."""
        if not self.demodulate:
            return None
        weight = self.weight[0] * self.scale
        # sum_{i,k} (W[o,i,k] * s[n,i])^2 = (s^2) @ (sum_k W[o,i,k]^2)^T  -> [N, out]
        demod = torch.rsqrt(s.pow(2) @ weight.pow(2).sum([2, 3]).t() + 1e-8)
        return demod.view(s.shape[0], self.out_channel, 1, 1)

    def winograd_weight(self) -> torch.Tensor:
        """The scaled weight in the F(4x4, 3x3) domain (see :mod:`blendgan.ops.winograd`):
        [36, in, out], or [36, in, 4·out] with the blur folded in when upsampling; made once
        and kept until the weight changes."""
        return self._winograd.get(self.weight)

    def _transform_weight(self, weight: torch.Tensor) -> torch.Tensor:
        scaled = weight[0] * self.scale
        return winograd.transform_weight_up(scaled, self.blur.kernel) if self.upsample \
            else winograd.transform_weight(scaled)

    def extra_repr(self) -> str:
        return f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, " \
               f"upsample={self.upsample}, demodulate={self.demodulate}"


class NoiseInjection(nn.Module):
    """Adds ``weight * noise`` ([N or 1, 1, H, W]) to the features."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """Learned constant [1, C, 4, 4], repeated over the batch."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """ModulatedConv2d -> noise -> bias + leaky ReLU."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = BLUR_KERNEL,
                 demodulate: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    demodulate=demodulate, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if x.is_cuda or torch.is_grad_enabled() or not self.conv.demodulate:
            return self.activate(self.noise(self.conv(x, style), noise))
        # CPU inference: lrelu(conv·d + w·noise + b)·√2, fused into the Winograd bands, or
        # with (w·noise + b) computed once for the batch, in three memory passes instead of six
        s = self.conv.modulation(style)
        if self.uses_winograd(x):
            return winograd.conv3x3(x, self.conv.winograd_weight(), s, self.conv.demodulation(s).flatten(1),
                                    self.activate.bias, self.noise.weight * noise, lrelu=True,
                                    up=2 if self.conv.upsample else 1)
        offset = self.noise.weight * noise + self.activate.bias.view(1, -1, 1, 1)
        out, demod = self.conv.forward_parts(x, s)
        out = torch.addcmul(offset.contiguous(memory_format=_format_of(out)), out, demod)
        return F.leaky_relu_(out, 0.2).mul_(SQRT2)

    def uses_winograd(self, x: torch.Tensor) -> bool:
        """Whether CPU inference on ``x`` [N, in, H, W] takes the F(4x4, 3x3) path (float32,
        3x3 kernels, maps from 8x8 up).  Measured per layer shape on a 2-core AVX2 CPU
        (``tools/benchmark_winograd.py``, C++ transforms): 1.4-3x faster than oneDNN's
        direct convolution for the 128-512-channel layers, 1.6-2.4x for the 32-64-channel
        ones; upsampling layers with more than 256 input channels stay direct (oneDNN's
        transposed convolution is efficient there).  A fixed rule, not a timing, so every
        process takes the same path and writes the same bytes.  ``torch.compile`` traces the
        direct path (its loops over bands would unroll into every compiled graph)."""
        conv = self.conv
        if conv.kernel_size != 3 or min(x.shape[-2:]) < WINOGRAD_MIN_SIZE or not winograd.supports(x) \
                or torch.compiler.is_compiling():
            return False
        if conv.upsample:
            return tuple(conv.blur.kernel.shape) == (4, 4) and conv.blur.pad == (1, 1) and conv.in_channel <= 256
        return True


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) plus the upsampled skip image."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out
