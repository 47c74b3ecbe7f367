"""Tensor-level generators of the jobs: codes in, batches of images out.

They take tensors and a ``torch.Generator`` and know nothing of files; the folder jobs
(:mod:`blendgan.jobs`), the session (:mod:`blendgan.session`) and Python users build on them.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from . import defaults
from .controls import Strength
from .errors import UsageError
from .model import BlendGAN


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Slices of ``range(n)`` of at most ``batch_size`` items, in order."""
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def sample_zs(n: int, generator: torch.Generator, dim: int = 512) -> torch.Tensor:
    """``n`` face codes [n, dim], drawn one ``randn(1, dim)`` at a time like the official loop,
    so results do not depend on the batch size."""
    return torch.cat([torch.randn(1, dim, generator=generator, device=generator.device) for _ in range(n)])


def face_codes(obj, pics: int, dim: int = 512, source: str = "zs") -> torch.Tensor:
    """Face codes given as a tensor [P, dim] / [P, 1, dim] or a list of [1, dim] tensors ->
    float32 [pics, dim] (the first ``pics``); ``source`` names them in errors."""
    if isinstance(obj, (list, tuple)):
        if not all(isinstance(t, torch.Tensor) for t in obj):
            raise UsageError(f"{source}: a list of face codes must hold tensors")
        obj = torch.stack([t.reshape(-1) for t in obj])
    if not isinstance(obj, torch.Tensor) or obj.ndim < 2 or obj.shape[-1] != dim or obj.numel() % dim:
        shape = list(obj.shape) if isinstance(obj, torch.Tensor) else type(obj).__name__
        raise UsageError(f"{source}: face codes must be a [P, {dim}] tensor, got {shape}")
    zs = obj.reshape(-1, dim).float()
    if zs.shape[0] < pics:
        raise UsageError(f"{source}: holds {zs.shape[0]} face codes, {pics} needed")
    return zs[:pics]


def stylized_pairs(model: BlendGAN, zs: torch.Tensor, z_style: torch.Tensor, *,
                   truncation: float | None = None,
                   add_weight_index: int | None = defaults.PAIRS_ADD_WEIGHT_INDEX,
                   truncation_latent: torch.Tensor | None = None,
                   batch_size: int = defaults.BATCH_SIZE, strength: Strength = 1.0, preserve_color: bool = False,
                   style_weights: Sequence[float] | None = None
                   ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """For face codes ``zs`` [P, 512] and one style ``z_style`` [1, 512] (or [1, K, 512], K
    styles mixed by ``style_weights``), yield ``(slice, natural [B, 3, S, S], stylized
    [B, 3, S, S])`` per batch; ``strength`` and ``preserve_color`` as in :mod:`blendgan.controls`."""
    for sl in batches(zs.shape[0], batch_size):
        w_face = model.face_w_plus(zs[sl], truncation, truncation_latent)
        w_styl = model.blend(w_face, z_style, add_weight_index, strength=strength, preserve_color=preserve_color,
                             style_weights=style_weights)
        # rows below add_weight_index are pure face in both: those layers run once
        images = model.synthesis(torch.cat([w_face, w_styl]), shared=add_weight_index or 0, branches=2)
        b = w_face.shape[0]
        yield sl, images[:b], images[b:]


def transfer_batches(model: BlendGAN, w_plus: torch.Tensor, z_embed: torch.Tensor, *,
                     add_weight_index: int | None = defaults.TRANSFER_ADD_WEIGHT_INDEX,
                     batch_size: int = defaults.BATCH_SIZE, strength: Strength = 1.0,
                     preserve_color: bool = False) -> Iterator[tuple[slice, torch.Tensor]]:
    """Stylize face codes ``w_plus`` [N, n_latent, 512] with styles ``z_embed`` [N or 1, 512]
    (paired row by row); yields ``(slice, images [B, 3, S, S])``."""
    n = w_plus.shape[0]
    if z_embed.shape[0] == 1:
        z_embed = z_embed.expand(n, *z_embed.shape[1:])
    for sl in batches(n, batch_size):
        yield sl, model.synthesize(w_plus=w_plus[sl], z_embed=z_embed[sl], add_weight_index=add_weight_index,
                                   strength=strength, preserve_color=preserve_color)


def transition_alphas(steps: int = defaults.VIDEO_TRANSITION_STEPS,
                      hold: int = defaults.VIDEO_HOLD_FRAMES) -> list[float]:
    """Blend factors of one style change: 0, ``steps`` sigmoid samples over [-5, 5), then
    ``hold`` ones (the official ``get_alphas`` for steps=20, hold=10)."""
    xs = -5 + np.arange(max(steps, 0)) * (10 / steps) if steps > 0 else np.zeros(0)
    return [0.0] + [float(1 / (1 + np.exp(-x))) for x in xs] + [1.0] * hold


def interpolation_frames(model: BlendGAN, w_plus: torch.Tensor, z_prev: torch.Tensor, z_next: torch.Tensor,
                         alphas: Sequence[float], *,
                         add_weight_index: int | None = defaults.VIDEO_ADD_WEIGHT_INDEX,
                         batch_size: int = defaults.BATCH_SIZE, strength: Strength = 1.0,
                         preserve_color: bool = False) -> Iterator[tuple[slice, torch.Tensor]]:
    """Frames [B, 3, S, S] of face ``w_plus`` [1, n_latent, 512] while its style moves from
    ``z_prev`` to ``z_next`` ([1, 512]) by ``lerp`` at each alpha."""
    a = torch.tensor(list(alphas), dtype=z_prev.dtype, device=model.device).view(-1, 1)
    for sl in batches(len(alphas), batch_size):
        z = torch.lerp(z_prev.expand(a[sl].shape[0], -1), z_next.expand(a[sl].shape[0], -1), a[sl])
        yield sl, model.synthesize(w_plus=w_plus.expand(z.shape[0], -1, -1), z_embed=z,
                                   add_weight_index=add_weight_index, strength=strength,
                                   preserve_color=preserve_color)


def style_tour(model: BlendGAN, w_plus: torch.Tensor, codes: Sequence[torch.Tensor], alphas: Sequence[float], *,
               add_weight_index: int | None = defaults.VIDEO_ADD_WEIGHT_INDEX,
               batch_size: int = defaults.BATCH_SIZE, strength: Strength = 1.0,
               preserve_color: bool = False) -> Iterator[tuple[int, slice, torch.Tensor]]:
    """Face ``w_plus`` [1, n_latent, 512] moving through the styles ``codes`` ([1, 512] each,
    two or more) in order: ``(k, slice of alphas, frames [B, 3, S, S])`` for the change from
    style k to style k + 1 (:func:`interpolation_frames` of each consecutive pair)."""
    for k in range(len(codes) - 1):
        for sl, images in interpolation_frames(model, w_plus, codes[k], codes[k + 1], alphas,
                                               add_weight_index=add_weight_index, batch_size=batch_size,
                                               strength=strength, preserve_color=preserve_color):
            yield k, sl, images


def strength_ramp(model: BlendGAN, w_plus: torch.Tensor, z_embed: torch.Tensor, strengths: Sequence[float], *,
                  add_weight_index: int | None = defaults.TRANSFER_ADD_WEIGHT_INDEX,
                  batch_size: int = defaults.BATCH_SIZE, preserve_color: bool = False,
                  style_weights: Sequence[float] | None = None) -> Iterator[tuple[slice, torch.Tensor]]:
    """Frames [B, 3, S, S] of face ``w_plus`` [1, n_latent, 512] stylized by ``z_embed`` [1, 512]
    (or [1, K, 512]) at each of ``strengths`` in turn (e.g. 0 → 1: from the face to the
    stylized result); yields ``(slice of strengths, frames)``."""
    s = torch.tensor(list(strengths), dtype=torch.float32).view(-1, 1)
    for sl in batches(len(strengths), batch_size):
        n = s[sl].shape[0]
        yield sl, model.synthesize(w_plus=w_plus.expand(n, -1, -1), z_embed=z_embed,
                                   add_weight_index=add_weight_index, strength=s[sl].expand(n, model.n_latent),
                                   preserve_color=preserve_color, style_weights=style_weights)


def slide_window(prev: np.ndarray, nxt: np.ndarray, alpha: float) -> np.ndarray:
    """Window of height H sliding down ``prev`` stacked over ``nxt`` (RGB [H, W, 3]) by ``alpha``."""
    h = prev.shape[0]
    top = int(h * alpha)
    return np.concatenate([prev, nxt], axis=0)[top:top + h]
