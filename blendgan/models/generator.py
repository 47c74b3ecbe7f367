"""BlendGAN generator: StyleGAN2 synthesis + two mapping networks + weighted blending module.

State-dict keys are those of the official ``g_ema``: ``style.*`` (face mapping),
``embedding.*`` (style mapping), ``embedder.*`` (style encoder), ``add_weight`` (WBM),
``input``, ``conv1``, ``to_rgb1``, ``convs.*``, ``to_rgbs.*``, ``noises.noise_<i>``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from .layers import BLUR_KERNEL, ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB
from .style_encoder import StyleEncoder


def channel_table(channel_multiplier: int = 2) -> dict[int, int]:
    """Feature-map widths per resolution (StyleGAN2 config F)."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm,
            256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}


def n_latent_for(size: int) -> int:
    """Number of W+ entries for an output resolution: ``2·log2(size) − 2``."""
    return 2 * int(math.log2(size)) - 2


def mapping_network(style_dim: int, n_mlp: int, lr_mul: float) -> nn.Sequential:
    """PixelNorm followed by ``n_mlp`` equalized linears with fused leaky ReLU."""
    layers: list[nn.Module] = [PixelNorm()]
    layers += [EqualLinear(style_dim, style_dim, lr_mul=lr_mul, activation="fused_lrelu")
               for _ in range(n_mlp)]
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """StyleGAN2 generator with BlendGAN's weighted blending module (WBM).

    ``size``: output resolution (power of two, 8..1024); widths per resolution come from
    ``channel_multiplier`` (config F) or an explicit ``channels`` mapping.  ``n_latent`` W+ vectors of
    ``style_dim`` drive the synthesis: W+ index 0 -> conv1, 1 -> to_rgb1, then for each
    resolution (2i+1, 2i+2) -> its two convs and 2i+3 -> its ToRGB.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, lr_mlp: float = 0.01,
                 style_encoder: bool = True, channels: Mapping[int, int] | None = None):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size = size
        self.style_dim = style_dim
        self.log_size = int(math.log2(size))
        self.n_latent = n_latent_for(size)
        self.num_layers = (self.log_size - 2) * 2 + 1
        # ``channels`` (resolution -> width) overrides the config-F table, e.g. for narrow test models
        self.channels = dict(channel_table(channel_multiplier) if channels is None else channels)

        if style_encoder:
            self.embedder = StyleEncoder(style_dim=style_dim, n_mlp=4)
        self.embedding = mapping_network(style_dim, n_mlp, lr_mlp)
        self.style = mapping_network(style_dim, n_mlp, lr_mlp)

        ch = self.channels
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch
        self.add_weight = nn.Parameter(torch.ones(1, self.n_latent, 1))

    # -- latents ---------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Face mapping network: z [N, style_dim] -> w [N, style_dim]."""
        return self.style(z)

    def style_mapping(self, z_embed: torch.Tensor) -> torch.Tensor:
        """Style mapping network: z_embed [N, style_dim] -> w_style [N, style_dim]."""
        return self.embedding(z_embed)

    def blend_weights(self, add_weight_index: int | None = None) -> torch.Tensor:
        """Per-layer face weight ``a`` [1, n_latent, 1] in [0, 1] (1 = pure face).

        ``a = clamp(add_weight, 0, 1)``; with ``add_weight_index = i`` the first i layers
        are forced to 1.
        """
        a = self.add_weight.clamp(0.0, 1.0)
        if add_weight_index is not None:
            keep = torch.arange(self.n_latent, device=a.device).view(1, -1, 1) < add_weight_index
            a = torch.where(keep, torch.ones_like(a), a)
        return a

    def blend(self, w_face: torch.Tensor, w_style: torch.Tensor,
              add_weight_index: int | None = None) -> torch.Tensor:
        """Weighted blending module: ``w_face·a + w_style·(1−a)``.

        ``w_face`` [N, n_latent, D]; ``w_style`` [N, D] (same for all layers) or
        [N, n_latent, D] -> W+ [N, n_latent, D].
        """
        if w_style.ndim == 2:
            w_style = w_style.unsqueeze(1)
        a = self.blend_weights(add_weight_index).to(w_face.dtype)
        return w_face * a + w_style * (1 - a)

    # -- noise -----------------------------------------------------------------------------
    def stored_noise(self) -> list[torch.Tensor]:
        """The checkpoint's fixed noise maps, [1, 1, r, r] each (official randomize_noise=False)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def random_noise(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh Gaussian noise maps [batch, 1, r, r] drawn from ``generator`` (the global RNG when None)."""
        ref = self.input.input
        return [torch.randn(batch, 1, *n.shape[2:], generator=generator, device=ref.device, dtype=ref.dtype)
                for n in self.stored_noise()]

    # -- synthesis -------------------------------------------------------------------------
    def forward(self, w_plus: torch.Tensor, noise: Sequence[torch.Tensor] | None = None,
                shared: int = 0, branches: int = 1) -> torch.Tensor:
        """Synthesis network: W+ [N, n_latent, style_dim] -> image [N, 3, size, size].

        ``noise``: one map per layer ([1 or N, 1, r, r]); default the stored buffers.
        ``branches`` > 1 declares ``w_plus`` as that many stacked groups of N/branches rows
        that agree on W+ entries [0, ``shared``): the layers reading only those entries run
        once, on the first group, and their activations are then repeated (e.g. a natural
        and a stylized image share the layers below ``add_weight_index``).
        """
        if w_plus.ndim != 3 or w_plus.shape[1] != self.n_latent:
            raise ValueError(f"w_plus must be [N, {self.n_latent}, {self.style_dim}], got {tuple(w_plus.shape)}")
        if w_plus.shape[0] % branches:
            raise ValueError(f"batch {w_plus.shape[0]} is not divisible into {branches} branches")
        noise = self.stored_noise() if noise is None else list(noise)
        full = w_plus.shape[0]
        w = w_plus[:full // branches] if branches > 1 and shared > 0 else w_plus
        out = self.input(w.shape[0])
        if not w_plus.is_cuda:  # oneDNN convolutions are markedly faster in NHWC on CPU
            out = out.contiguous(memory_format=torch.channels_last)
        skip = None

        def widen(index: int) -> None:
            """Before a layer reading W+ row ``index``: repeat the shared part over the branches."""
            nonlocal w, out, skip
            if w.shape[0] != full and index >= shared:
                w = w_plus
                out = torch.cat([out] * branches)  # cat keeps NHWC; repeat would not
                skip = None if skip is None else torch.cat([skip] * branches)

        def noise_for(n: torch.Tensor) -> torch.Tensor:
            return n if n.shape[0] == 1 else n[:w.shape[0]]

        out = self.conv1(out, w[:, 0], noise_for(noise[0]))
        widen(1)
        skip = self.to_rgb1(out, w[:, 1])
        i = 1
        for conv_up, conv, n1, n2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2],
                                                  noise[2::2], self.to_rgbs):
            widen(i)
            out = conv_up(out, w[:, i], noise_for(n1))
            widen(i + 1)
            out = conv(out, w[:, i + 1], noise_for(n2))
            widen(i + 2)
            skip = to_rgb(out, w[:, i + 2], skip)
            i += 2
        return skip.contiguous()
