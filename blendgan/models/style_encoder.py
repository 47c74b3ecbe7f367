"""BlendGAN's self-supervised style encoder: Gram matrices of VGG19 features -> MLP.

Keys follow the official release: ``embedder.feature_extractor.vgg_layers.<i>.*``
(torchvision's VGG19 ``features`` indices) and ``embedder_mlp.<i>.*``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import EqualLinear, WinogradConv2d

# VGG19 configuration "E": conv widths, "M" = 2x2 max-pool.
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# Indices in ``vgg_layers`` whose outputs feed the Gram matrices: relu1_2 ... relu5_4.
FEATURE_LAYERS = (3, 8, 17, 26, 35)
STYLE_POOL = 256


def vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features`` layout (same indices and parameters), built without
    downloads; the convolutions take the Winograd path in CPU inference (:class:`WinogradConv2d`)."""
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [WinogradConv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return nn.Sequential(*layers)


def gram_dim(cfg=VGG19_CFG, layers=FEATURE_LAYERS) -> int:
    """Length of the concatenated Gram vector (610304 for VGG19)."""
    widths, index = {}, 0
    for v in cfg:
        if v == "M":
            index += 1
        else:
            widths[index + 1] = v  # the ReLU after this conv
            index += 2
    return sum(widths[i] ** 2 for i in layers)


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """``F Fᵀ / (C·H·W)`` of features [N, C, H, W] -> [N, C, C]."""
    n, c, h, w = feat.shape
    f = feat.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


class FeatureExtractor(nn.Module):
    """VGG19 features; returns the activations at :data:`FEATURE_LAYERS`."""

    def __init__(self):
        super().__init__()
        self.vgg_layers = vgg19_features()
        self.last = max(FEATURE_LAYERS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for index, layer in enumerate(self.vgg_layers):
            if index > self.last:
                break
            x = layer(x)
            if index in FEATURE_LAYERS:
                feats.append(x)
        return feats


class StyleEmbedder(nn.Module):
    """Image [N, 3, H, W] in [-1, 1] -> Gram vector [N, 610304].

    The image is adaptive-average-pooled to 256x256 first and goes into VGG19 as is (no
    ImageNet normalisation), exactly as the official release does.
    """

    def __init__(self):
        super().__init__()
        self.feature_extractor = FeatureExtractor()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(img, (STYLE_POOL, STYLE_POOL))
        return torch.cat([gram_matrix(f).flatten(1) for f in self.feature_extractor(x)], dim=1)


class StyleEncoder(nn.Module):
    """Gram vector -> 4 equalized linears (3 with fused leaky ReLU) -> z_embed [N, style_dim]."""

    def __init__(self, style_dim: int = 512, n_mlp: int = 4):
        super().__init__()
        self.style_dim = style_dim
        self.embedder = StyleEmbedder()
        dims = [gram_dim()] + [style_dim] * n_mlp
        layers = [EqualLinear(dims[i], dims[i + 1], activation="fused_lrelu" if i < n_mlp - 1 else None)
                  for i in range(n_mlp)]
        self.embedder_mlp = nn.Sequential(*layers)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """``img`` [N, 3, H, W] in [-1, 1], any H, W -> z_embed [N, style_dim]."""
        return self.embedder_mlp(self.embedder(img))
