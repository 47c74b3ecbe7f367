"""StyleGAN2 discriminators for training BlendGAN.

* :class:`Discriminator`: the StyleGAN2 residual discriminator (config F): a 1x1 ``fromRGB``
  conv, one :class:`ResBlock` per resolution from ``size`` down to 8 (each halves the
  resolution), minibatch standard deviation, a 3x3 conv at 4x4 and two equalized linears.
  Used as the face discriminator (natural outputs vs faces) and the style discriminator
  (stylized outputs vs artworks).
* :class:`ProjectionDiscriminator`: the same trunk conditioned on a style code by projection
  (Miyato & Koyama, 2018): ``D(x, e) = l_out(h) + <l_style(e), h>`` with ``h`` [N, C] the
  penultimate features; it judges whether an image matches the style code ``e``.

Parameter names follow rosinality's StyleGAN2 port (``convs.<i>``, ``final_conv``,
``final_linear.<j>``), so a face discriminator from such a checkpoint (``'d'``) loads as is.
Every layer uses the equalized learning rate, like the generator.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import fused_leaky_relu
from .generator import channel_table
from .layers import BLUR_KERNEL, Blur, EqualLinear, FusedLeakyReLU


class EqualConv2d(nn.Module):
    """Equalized-lr 2-D convolution: ``conv(x, weight / sqrt(in·k²)) + bias``.

    ``x`` [N, in, H, W] -> [N, out, H', W'] with the usual ``stride`` / ``padding`` rules.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, (self.weight * self.scale).to(x.dtype), bias, stride=self.stride,
                        padding=self.padding)

    def extra_repr(self) -> str:
        w = self.weight
        return f"{w.shape[1]}, {w.shape[0]}, {w.shape[2]}, stride={self.stride}, padding={self.padding}"


class _LeakyReLU(nn.Module):
    """``leaky_relu(x, 0.2)·√2`` without a bias (for an activated conv that has none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, None)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [bias + leaky ReLU].

    ``downsample``: FIR low-pass then a stride-2 convolution, [N, in, H, W] -> [N, out, H/2, W/2];
    otherwise "same" padding keeps H, W.  With ``activate`` the bias lives in the
    :class:`FusedLeakyReLU` (as in StyleGAN2), else in the convolution.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel) if bias else _LeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual downsampling block: [N, in, H, W] -> [N, out, H/2, W/2].

    ``(conv2(conv1(x)) + skip(x)) / √2`` with ``conv2`` and the 1x1 ``skip`` downsampling.
    """

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False,
                              blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


def stddev_group_size(batch: int, max_group: int) -> int:
    """Largest group size <= ``max_group`` that divides ``batch`` (1 for a batch of 1)."""
    for g in range(min(batch, max_group), 0, -1):
        if batch % g == 0:
            return g
    return 1


def minibatch_stddev(x: torch.Tensor, max_group: int = 4, n_feat: int = 1) -> torch.Tensor:
    """Append ``n_feat`` channels holding the feature std over groups of samples.

    ``x`` [N, C, H, W] -> [N, C + n_feat, H, W].  Sample ``n`` is in the group of all samples
    with the same ``n mod (N/G)``; its std is averaged over channels (split in ``n_feat``
    parts) and pixels.  Real and fake images must go through in separate calls.
    """
    n, c, h, w = x.shape
    g = stddev_group_size(n, max_group)
    y = x.float().view(g, n // g, n_feat, c // n_feat, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)        # [N/G, F, C/F, H, W]
    y = y.mean([2, 3, 4]).view(n // g, n_feat, 1, 1)        # [N/G, F, 1, 1]
    y = y.repeat(g, 1, h, w).to(x.dtype)                    # [N, F, H, W]
    return torch.cat([x, y], 1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: image [N, 3, size, size] -> logit [N, 1].

    Widths per resolution come from ``channel_multiplier`` (config F table) or ``channels``
    (resolution -> width, the same mapping as the generator's), e.g.
    ``{4: 32, 8: 32, 16: 16, 32: 16}`` for a tiny 32px model.
    """

    def __init__(self, size: int, channel_multiplier: int = 2, blur_kernel: Sequence[float] = BLUR_KERNEL,
                 channels: Mapping[int, int] | None = None, stddev_group: int = 4, stddev_feat: int = 1):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        ch = dict(channel_table(channel_multiplier) if channels is None else channels)
        missing = [2 ** i for i in range(2, int(math.log2(size)) + 1) if 2 ** i not in ch]
        if missing:
            raise ValueError(f"channels has no width for resolution(s) {missing}")
        if ch[4] % stddev_feat:
            raise ValueError(f"the 4x4 width {ch[4]} is not divisible by stddev_feat={stddev_feat}")
        self.size = size
        self.channels = ch
        self.stddev_group = stddev_group
        self.stddev_feat = stddev_feat
        convs: list[nn.Module] = [ConvLayer(3, ch[size], 1)]
        res = size
        while res > 4:
            convs.append(ResBlock(ch[res], ch[res // 2], blur_kernel))
            res //= 2
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(ch[4] + stddev_feat, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"),
            EqualLinear(ch[4], 1),
        )

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`features` (the 4x4 channel count)."""
        return self.channels[4]

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Image [N, 3, size, size] -> the last convolution's maps [N, C4, 4, 4]."""
        if x.ndim != 4 or x.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"discriminator input must be [N, 3, {self.size}, {self.size}], got {tuple(x.shape)}")
        out = self.convs(x)
        out = minibatch_stddev(out, self.stddev_group, self.stddev_feat)
        return self.final_conv(out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Image [N, 3, size, size] -> penultimate features h [N, C4]."""
        return self.final_linear[0](self.trunk(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image [N, 3, size, size] -> realness logit [N, 1]."""
        return self.final_linear[1](self.features(x))


class ProjectionDiscriminator(Discriminator):
    """Style-conditioned discriminator, BlendGAN's official ``ProjectionDiscriminator``:
    (image [N, 3, S, S], z_embed [N, style_dim]) -> logit [N, 1].

    ``D(x, e) = l_out(h) + sum(l_style(e) · h, dim=1)`` with ``h`` [N, C4] the last
    convolution's maps summed over space (no fully connected layer before the projection,
    unlike :class:`Discriminator`).  Official parameter names: ``convs``, ``final_conv``,
    ``l_out``, ``l_style``.
    """

    def __init__(self, size: int, style_dim: int, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, channels: Mapping[int, int] | None = None,
                 stddev_group: int = 4, stddev_feat: int = 1):
        super().__init__(size, channel_multiplier, blur_kernel, channels, stddev_group, stddev_feat)
        del self.final_linear  # the projection head replaces it
        self.style_dim = style_dim
        self.l_out = EqualLinear(self.feature_dim, 1)
        self.l_style = EqualLinear(style_dim, self.feature_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Image [N, 3, size, size] -> h [N, C4]: the last convolution's maps summed over space."""
        return self.trunk(x).sum((2, 3))

    def forward(self, x: torch.Tensor, z_embed: torch.Tensor,
                z_other: torch.Tensor | None = None):  # type: ignore[override]
        """Logits [N, 1] of the pairs (x, z_embed).  With ``z_other`` [N, style_dim]: the
        logits of (x, z_embed) and of (x, z_other), from one pass of the trunk (training
        judges each artwork with its own and with another artwork's code)."""
        for z in (z_embed,) if z_other is None else (z_embed, z_other):
            if z.ndim != 2 or z.shape != (x.shape[0], self.style_dim):
                raise ValueError(f"z_embed must be [{x.shape[0]}, {self.style_dim}], got {tuple(z.shape)}")
        h = self.features(x)
        logit = self.project(h, z_embed)
        return logit if z_other is None else (logit, self.project(h, z_other))

    def project(self, h: torch.Tensor, z_embed: torch.Tensor) -> torch.Tensor:
        """Features h [N, C4] and codes [N, style_dim] -> logits l_out(h) + <l_style(e), h> [N, 1]."""
        return self.l_out(h) + (self.l_style(z_embed.to(h.dtype)) * h).sum(1, keepdim=True)
