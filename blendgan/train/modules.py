"""The networks as training sees them: the generator's two branches in one module, the WBM's
straight-through blend, the EMA copy, and the style encoder's contrastive head.

The models themselves live in :mod:`blendgan.models`; nothing here changes their layout, so
what training writes loads with :meth:`blendgan.BlendGAN.from_pretrained`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import Generator
from ..models.layers import EqualLinear
from ..models.style_encoder import STYLE_POOL, StyleEmbedder, gram_matrix


# -- generator --------------------------------------------------------------------------------------
class GeneratorStep(nn.Module):
    """The generator as one module (what DistributedDataParallel wraps).

    ``forward(z1, z2, cross, z_embed, noise, style_only=None)``: face codes z1, z2 [B, D];
    ``cross`` [B] int, W+ rows ``< cross`` come from z1, the others from z2 (``cross =
    n_latent``: no mixing); ``z_embed`` [B, D] style codes or None; ``noise``: one map per
    layer, [2B (B without z_embed), 1, r, r]; ``style_only`` [B] bool or None: the stylized
    samples made by the style branch alone (blend weight 0 in every row).
    Returns (images [2B, 3, S, S] = natural then stylized, W+ [2B, n_latent, D]).
    """

    def __init__(self, g: Generator):
        super().__init__()
        self.g = g

    def forward(self, z1, z2, cross, z_embed, noise, style_only=None):
        g = self.g
        w1, w2 = g.mapping(z1), g.mapping(z2)
        rows = torch.arange(g.n_latent, device=z1.device).view(1, -1, 1)
        w_face = torch.where(rows < cross.view(-1, 1, 1), w1.unsqueeze(1), w2.unsqueeze(1))
        if z_embed is None:
            w_plus = w_face
        else:
            a = blend_weights_st(g).to(w_face.dtype)
            if style_only is not None:
                a = torch.where(style_only.view(-1, 1, 1), torch.zeros_like(a), a)
            w_style = g.style_mapping(z_embed).unsqueeze(1)
            w_plus = torch.cat([w_face, w_face * a + w_style * (1 - a)])
        return g(w_plus, noise), w_plus


def blend_weights_st(g: Generator) -> torch.Tensor:
    """The WBM weights clamp(add_weight, 0, 1) [1, n_latent, 1] with a straight-through gradient.

    ``Generator.blend`` clamps, and a clamp passes no gradient at its bounds: ``add_weight``
    starts at exactly 1 and would never move.  Training uses the clamped value forward and the
    identity backward, and :func:`project_add_weight` keeps the parameter in [0, 1] after each
    update (projected gradient descent), so inference's clamp is then a no-op.
    """
    w = g.add_weight
    return w + (w.clamp(0.0, 1.0) - w).detach()


@torch.no_grad()
def project_add_weight(g: Generator) -> None:
    """Clamp the WBM parameter back into [0, 1] after an optimizer step."""
    g.add_weight.clamp_(0.0, 1.0)


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """``target = decay·target + (1 − decay)·source`` for every parameter (buffers copied)."""
    src = dict(source.named_parameters())
    for name, p in target.named_parameters():
        p.lerp_(src[name].detach(), 1.0 - decay)
    src_b = dict(source.named_buffers())
    for name, b in target.named_buffers():
        b.copy_(src_b[name])


# -- style encoder ----------------------------------------------------------------------------------
def gram_vectors(embedder: StyleEmbedder, x: torch.Tensor, pool: int = STYLE_POOL) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1] -> Gram vectors [N, 610304] (VGG19 on a ``pool``² average pool).

    ``pool`` = 256 is what the style encoder does at inference; smaller values only to test.
    """
    x = F.adaptive_avg_pool2d(x, (pool, pool))
    return torch.cat([gram_matrix(f).flatten(1) for f in embedder.feature_extractor(x)], dim=1)


class Projector(nn.Sequential):
    """Projection head: 3 equalized linears with fused leaky ReLU + 1 linear, [N, D] -> [N, D]."""

    def __init__(self, style_dim: int, n_layers: int = 4):
        layers = [EqualLinear(style_dim, style_dim, activation="fused_lrelu" if i < n_layers - 1 else None)
                  for i in range(n_layers)]
        super().__init__(*layers)


class ContrastiveHead(nn.Module):
    """The trainable part: Gram vector [N, 610304] -> (z_embed [N, D] (MLP), projection [N, D])."""

    def __init__(self, embedder_mlp: nn.Module, projector: Projector):
        super().__init__()
        self.embedder_mlp = embedder_mlp
        self.projector = projector

    def forward(self, gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.embedder_mlp(gram)
        return code, self.projector(code)
