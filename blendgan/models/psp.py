"""pSp encoder (IR-SE50 backbone + GradualStyleEncoder) that inverts a face into W+.

Keys follow ``psp_encoder.pt``'s ``state_dict`` with the ``encoder.`` prefix:
``encoder.input_layer.*``, ``encoder.body.<0..23>.*``, ``encoder.styles.<j>.*``,
``encoder.latlayer1/2.*``; ``latent_avg`` is stored beside it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import EqualLinear, WinogradConv2d

FACE_POOL = 256
# IR-50: (in, depth, units) per stage; the first unit of each stage has stride 2.
IR50_STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))
# Body indices whose outputs feed the feature pyramid (c1: 128 ch, c2: 256 ch, c3: 512 ch).
C1, C2, C3 = 6, 20, 23
COARSE, MIDDLE = 3, 7  # styles [0, 3) read c3 (16x16), [3, 7) p2 (32x32), the rest p1 (64x64)


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: x * sigmoid(fc2(relu(fc1(avgpool(x)))))."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(g))))


class Subsample(nn.Module):
    """Every ``stride``-th row and column of [N, C, H, W]: exactly what the official
    shortcut ``MaxPool2d(1, stride)`` computes, as a view instead of a pooling pass."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x


class BottleneckIRSE(nn.Module):
    """IR-SE residual unit: BN-conv-PReLU-conv(stride)-BN-SE plus a (strided) shortcut
    (the stride-1 convolutions take the Winograd path in CPU inference)."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            WinogradConv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            WinogradConv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """Strided 3x3 convs down to 1x1, then an equalized linear: [N, C, s, s] -> [N, C]."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        for _ in range(int(math.log2(spatial)) - 1):
            layers += [nn.Conv2d(out_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


class GradualStyleEncoder(nn.Module):
    """IR-SE50 + feature pyramid + one GradualStyleBlock per W+ entry.

    Image [N, 3, 256, 256] -> codes [N, n_styles, 512] (without ``latent_avg``).
    """

    def __init__(self, n_styles: int):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                         nn.PReLU(64))
        units = []
        for in_c, depth, n in IR50_STAGES:
            units.append(BottleneckIRSE(in_c, depth, 2))
            units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)
        self.style_count = n_styles
        self.styles = nn.ModuleList(
            GradualStyleBlock(512, 512, 16 if j < COARSE else 32 if j < MIDDLE else 64)
            for j in range(n_styles))
        self.latlayer1 = nn.Conv2d(256, 512, 1)
        self.latlayer2 = nn.Conv2d(128, 512, 1)

    @staticmethod
    def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=y.shape[2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == C1:
                c1 = x
            elif i == C2:
                c2 = x
            elif i == C3:
                c3 = x
        p2 = self._upsample_add(c3, self.latlayer1(c2))
        p1 = self._upsample_add(p2, self.latlayer2(c1))
        sources = [c3] * COARSE + [p2] * (MIDDLE - COARSE) + [p1] * (self.style_count - MIDDLE)
        return torch.stack([style(src) for style, src in zip(self.styles, sources)], dim=1)


class PSPEncoder(nn.Module):
    """Face image [N, 3, H, W] in [-1, 1] -> W+ [N, n_latent, 512] (``latent_avg`` added).

    The input is adaptive-average-pooled to 256x256 first, as in the official release.
    ``latent_avg`` is a buffer of shape [n_latent, 512] (a stored [512] is broadcast).
    """

    def __init__(self, n_latent: int):
        super().__init__()
        self.n_latent = n_latent
        self.encoder = GradualStyleEncoder(n_latent)
        self.register_buffer("latent_avg", torch.zeros(n_latent, 512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, (FACE_POOL, FACE_POOL))
        if x.device.type == "cpu":
            # channels-last throughout on a CPU: the Winograd layers write NHWC, and NCHW
            # layers between them would cost a layout copy each (~11% of the encoding)
            x = x.contiguous(memory_format=torch.channels_last)
        return self.encoder(x) + self.latent_avg.unsqueeze(0)
