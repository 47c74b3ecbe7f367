"""ArcFace IR-SE50 face recogniser (the ``model_ir_se50.pth`` layout of the pSp/PTI projects),
for the optional identity loss of :mod:`blendgan.inversion`.

Keys: ``input_layer.*``, ``body.<0..23>.*`` (the IR-SE units of :mod:`.psp`),
``output_layer.{0,3,4}.*`` (BatchNorm2d, Linear 512·7·7 -> 512, BatchNorm1d).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .psp import IR50_STAGES, BottleneckIRSE

ID_SIZE = 112  # the recogniser's input side


class IdentityNet(nn.Module):
    """Aligned face [N, 3, H, W] in [-1, 1] -> unit identity embedding [N, 512].

    The face is cropped to its inner region (rows 35/256 … 223/256, columns 32/256 …
    220/256 of an FFHQ crop) and pooled to 112 px, as the recogniser was used on FFHQ crops."""

    def __init__(self):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units = []
        for in_c, depth, n in IR50_STAGES:
            units.append(BottleneckIRSE(in_c, depth, 2))
            units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.4), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x[:, :, round(h * 35 / 256):round(h * 223 / 256), round(w * 32 / 256):round(w * 220 / 256)]
        x = F.adaptive_avg_pool2d(x, (ID_SIZE, ID_SIZE))
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)
