"""The stylization controls, as the weighted blending module sees them.

With the learned blend weights ``a = clamp(add_weight, 0, 1)`` [n_latent] of a checkpoint,
every control is a choice of the per-layer *face weight* ``a'`` [N, n_latent] in the blend
``w+ = w_face·a' + w_style·(1 − a')``:

* **strength** ``s_l >= 0`` (a number, one per W+ layer [n_latent], or one per sample and
  layer [N, n_latent]): ``a'_l = clamp(1 − s_l·(1 − a_l), 0, 1)``.  ``s = 1`` is the official
  blend bit for bit, ``s = 0`` the face alone, larger values push every layer toward the
  pure style.
* **add_weight_index** ``i``: ``a'_l = 1`` for ``l < i`` (the official knob: the first i
  layers keep the face's structure).
* **preserve_color**: ``a'_l = 1`` from W+ index :data:`PRESERVE_COLOR_FROM` (7) on, the
  layers that draw 64×64 and finer at every resolution: the face keeps its own fine styles,
  hence its colours.
* **style mixing**: K style codes z_embed [N, K, 512] are each mapped by the style mapping
  network, then ``w_style = Σ_k weight_k · w_style_k`` with the weights normalised to sum 1
  (default: uniform).

Values are checked here with one-line errors, so every front end refuses the same things.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch

from . import defaults
from .errors import UsageError

#: First W+ index of the layers that draw 64×64 and finer (their styles carry colour and texture).
PRESERVE_COLOR_FROM = 7

Strength = Union[float, Sequence[float], torch.Tensor]


@dataclass(frozen=True)
class Controls:
    """One setting of the stylization controls (:mod:`blendgan.controls`)."""
    add_weight_index: int | None = defaults.TRANSFER_ADD_WEIGHT_INDEX
    strength: Strength = defaults.STRENGTH
    preserve_color: bool = False

    def describe(self, name: str) -> str:
        """``name value`` for a label: ``strength 0.5``, ``add_weight_index 6``, ``preserve_color on``."""
        value = getattr(self, name)
        if isinstance(value, bool):
            value = "on" if value else "off"
        elif isinstance(value, float):
            value = f"{value:g}"
        elif isinstance(value, (list, tuple)):
            value = "per layer"
        return f"{name} {value}"


def check_strength(strength: Strength, n_latent: int | None = None) -> float | torch.Tensor:
    """A valid strength: a finite number >= 0, or a float tensor of such numbers shaped
    [n_latent] or [N, n_latent] (``n_latent`` checked when given).  Lists become tensors."""
    if isinstance(strength, bool):
        raise UsageError(f"strength must be a number >= 0, got {strength!r}")
    if isinstance(strength, (int, float)):
        if not math.isfinite(strength) or strength < 0:
            raise UsageError(f"strength must be a finite number >= 0, got {strength}")
        return float(strength)
    try:
        t = torch.as_tensor(strength, dtype=torch.float32) if not isinstance(strength, torch.Tensor) else strength
    except (TypeError, ValueError, RuntimeError):
        raise UsageError(f"strength must be a number or a list of numbers, got {strength!r}") from None
    if t.ndim == 0:
        return check_strength(float(t))
    if t.ndim > 2 or not t.is_floating_point() and t.dtype not in (torch.int32, torch.int64):
        raise UsageError(f"strength must be a number, [n_latent] or [N, n_latent], got shape {list(t.shape)}")
    if n_latent is not None and t.shape[-1] != n_latent:
        raise UsageError(f"strength needs one value per W+ layer ({n_latent}), got {t.shape[-1]}")
    t = t.float()
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise UsageError("strength values must be finite numbers >= 0")
    return t


def check_style_weights(weights: Sequence[float] | torch.Tensor | None, k: int) -> torch.Tensor | None:
    """Mixing weights of ``k`` styles, normalised to sum 1 (float32 [k]); None: uniform (and
    None for a single style, which needs no mixing)."""
    if weights is None:
        return None if k == 1 else torch.full((k,), 1.0 / k)
    w = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
    if w.numel() != k:
        raise UsageError(f"style weights: {k} styles need {k} weights, got {w.numel()}")
    if not bool(torch.isfinite(w).all()):
        raise UsageError("style weights must be finite numbers")
    total = float(w.sum())
    if not total > 0:
        raise UsageError(f"style weights must sum to a positive number, got {total:g}")
    return w / total


def face_weights(a: torch.Tensor, add_weight_index: int | None = None, strength: Strength = 1.0,
                 preserve_color: bool = False) -> torch.Tensor:
    """The face weights ``a'`` [1 or N, n_latent] of the blend, from the checkpoint's clamped
    blend weights ``a`` [1, n_latent] and the controls (see the module doc)."""
    n_latent = a.shape[-1]
    s = check_strength(strength, n_latent)
    if isinstance(s, float):
        # s = 1 keeps the official weights as they are (1 − (1 − a) would round differently)
        out = a if s == 1.0 else (1 - s * (1 - a)).clamp(0.0, 1.0)
    else:
        s = s.to(a.device, a.dtype)
        out = torch.where(s == 1, a, (1 - s * (1 - a)).clamp(0.0, 1.0))
        out = out.reshape(-1, n_latent)
    layers = torch.arange(n_latent, device=a.device)
    if add_weight_index is not None:
        out = torch.where(layers < add_weight_index, torch.ones_like(out), out)
    if preserve_color:
        out = torch.where(layers >= PRESERVE_COLOR_FROM, torch.ones_like(out), out)
    return out
