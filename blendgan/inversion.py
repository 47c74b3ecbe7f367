"""Face inversion: the W+ (and, for PTI, the synthesis weights) that reproduce a face photo.

Three methods, each starting where the previous one ends, so that none can end worse than
its start (every loop keeps its best iterate by reconstruction loss):

``'psp'``
    the pSp encoder's W+ (:meth:`blendgan.BlendGAN.encode_face`): one encoder call.
``'optimize'``
    Adam on W+ from the pSp codes, against the input face resized to the generator's size
    (learning rate with a short warm-up and a cosine ramp-down, as StyleGAN2's projector),
    minimising the reconstruction loss below plus a mild pull toward the pSp codes.
``'pti'``
    pivotal tuning (Roich et al. 2021): the ``'optimize'`` result is the pivot, then the
    synthesis network's weights (not the mapping networks, not the encoders) are tuned for
    ``steps`` more steps at a constant learning rate to reproduce the face from the pivot.
    The result synthesizes with a copy of the model that shares everything but those weights.

The reconstruction loss, reported as :attr:`Inversion.loss` for every method, is
``mean((x − y)²) + perceptual(x, y)`` on images in [-1, 1] at the generator's size, where
``perceptual`` is the mean over the five VGG19 layers of the style encoder (relu1_2 …
relu5_4, the image average-pooled to at most 256 px) of the squared distance between
channel-normalised features, summed over channels and averaged over positions (LPIPS
without its learned weights).  It needs nothing but ``blendgan.pt``; a checkpoint without a
style encoder gets the pixel term alone.  Optional extras add terms to what is minimised
(never to the reported loss): LPIPS (the ``lpips`` package) and an identity loss with an
ArcFace IR-SE50 file (``model_ir_se50.pth``).

Noise comes from the checkpoint's fixed maps (as :meth:`blendgan.BlendGAN.synthesize` by
default), so inversion draws no random numbers and is deterministic.
"""
from __future__ import annotations

import copy
import os
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import defaults
from .checkpoint import load_identity
from .errors import DependencyError, UsageError
from .models.style_encoder import FEATURE_LAYERS, STYLE_POOL

METHODS = ("psp", "optimize", "pti")
#: the parts of the generator that PTI tunes (its synthesis network)
SYNTHESIS_PARTS = ("input", "conv1", "to_rgb1", "convs", "to_rgbs")
MIN_SIDE = 32   # smallest face image side accepted for inversion
WARMUP = 0.05   # fraction of the steps over which the learning rate ramps up
RAMPDOWN = 0.25  # fraction of the steps over which it ramps down (cosine)

#: ``progress(stage, step, steps, loss)`` called after each step (stage ``'optimize'`` or ``'tune'``)
Progress = Callable[[str, int, int, float], None]


@dataclass
class Inversion:
    """What :func:`invert` found for faces [N, 3, H, W].

    ``w_plus`` [N, n_latent, 512]; ``model``: the BlendGAN to synthesize them with (the
    model itself, or for ``'pti'`` a copy with tuned synthesis weights); ``loss`` [N]: the
    reconstruction loss of the result, ``start_loss`` [N]: that of the pSp codes (the module
    doc defines it); ``seconds``: time taken."""
    w_plus: torch.Tensor
    model: Any
    loss: torch.Tensor
    start_loss: torch.Tensor
    method: str
    steps: int
    seconds: float


@dataclass(frozen=True)
class Settings:
    """The settings of an inversion (they key cached results, see :meth:`key`)."""
    method: str = "optimize"
    steps: int = defaults.INVERT_STEPS
    lr: float = defaults.INVERT_LR
    tune_lr: float = defaults.INVERT_TUNE_LR
    pull: float = defaults.INVERT_PULL
    lpips: float = 0.0

    def key(self) -> str:
        """A short name of these settings for cache entries, e.g. ``optimize-s100-...``."""
        if self.method == "psp":
            return "psp"
        extra = f"-lpips{self.lpips:g}" if self.lpips else ""
        tune = f"-t{self.tune_lr:g}" if self.method == "pti" else ""
        return f"{self.method}-s{self.steps}-lr{self.lr:g}{tune}-p{self.pull:g}{extra}"


def check_settings(method: str, steps: int) -> None:
    """One-line :class:`UsageError` for an unknown method or a bad step count."""
    if method not in METHODS:
        raise UsageError(f"inversion method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise UsageError(f"inversion steps must be a whole number >= 0, got {steps!r}")


def check_face(face: torch.Tensor) -> None:
    """A face batch [N, 3, H, W] of finite floats with sides of at least :data:`MIN_SIDE`."""
    if not isinstance(face, torch.Tensor) or face.ndim != 4 or face.shape[1] != 3 or face.shape[0] < 1:
        shape = tuple(face.shape) if isinstance(face, torch.Tensor) else type(face).__name__
        raise UsageError(f"face must be a [N, 3, H, W] tensor in [-1, 1], got {shape}")
    if not face.is_floating_point():
        raise UsageError(f"face must be a floating-point tensor in [-1, 1] (see blendgan.io.to_tensor), "
                         f"got {face.dtype}")
    if min(face.shape[-2:]) < MIN_SIDE:
        raise UsageError(f"face image is {face.shape[-1]}x{face.shape[-2]} px: too small to invert "
                         f"(at least {MIN_SIDE} px a side)")
    if not bool(torch.isfinite(face).all()):
        raise UsageError("face holds values that are not finite numbers")


# -- the loss --------------------------------------------------------------------------------------
def _unit(f: torch.Tensor) -> torch.Tensor:
    return f * torch.rsqrt(f.square().sum(1, keepdim=True) + 1e-10)


class Reconstruction:
    """The reconstruction loss against ``target`` [N, 3, S, S] in [-1, 1] (see the module doc):
    ``measure(image)`` -> [N]; ``objective(image)`` -> [N] adds the optional extra terms.
    The target's features are computed once."""

    def __init__(self, model, target: torch.Tensor, lpips_weight: float = 0.0,
                 identity: nn.Module | None = None, identity_weight: float = defaults.INVERT_IDENTITY_WEIGHT):
        self.target = target
        self.vgg = model.generator.embedder.embedder.feature_extractor.vgg_layers \
            if model.has_style_encoder else None
        with torch.no_grad():
            self.target_feats = [f.detach() for f in self.features(target)] if self.vgg is not None else []
        self.lpips = None
        self.lpips_weight = lpips_weight
        if lpips_weight:
            try:
                import lpips
            except ImportError:
                raise DependencyError("the LPIPS loss needs the lpips package: pip install lpips") from None
            self.lpips = lpips.LPIPS(net="vgg", verbose=False).to(target.device).eval()
            for p in self.lpips.parameters():
                p.requires_grad_(False)
        self.identity, self.identity_weight = identity, identity_weight
        if identity is not None:
            with torch.no_grad():
                self.target_id = identity(target).detach()

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised VGG19 activations at :data:`FEATURE_LAYERS` of ``image`` pooled to
        at most 256 px."""
        x = image
        if min(x.shape[-2:]) > STYLE_POOL:
            x = F.adaptive_avg_pool2d(x, (STYLE_POOL, STYLE_POOL))
        feats = []
        for index, layer in enumerate(self.vgg):
            if index > FEATURE_LAYERS[-1]:
                break
            x = layer(x)
            if index in FEATURE_LAYERS:
                feats.append(_unit(x.float()))
        return feats

    def measure(self, image: torch.Tensor) -> torch.Tensor:
        """Pixel MSE + perceptual distance per sample: image [N, 3, S, S] -> [N]."""
        image = image.float()
        loss = (image - self.target).square().mean((1, 2, 3))
        if self.vgg is not None:
            dist = [(f - g).square().sum(1).mean((1, 2)) for f, g in zip(self.features(image), self.target_feats)]
            loss = loss + torch.stack(dist).mean(0)
        return loss

    def extras(self, image: torch.Tensor) -> torch.Tensor | float:
        """The optional terms (LPIPS; identity: ``1 − cos`` of ArcFace embeddings) per sample [N], or 0."""
        out = 0.0
        if self.lpips is not None:
            out = out + self.lpips_weight * self.lpips(image.float(), self.target).flatten()
        if self.identity is not None:
            out = out + self.identity_weight * (1 - (self.identity(image.float()) * self.target_id).sum(1))
        return out


def prepare_target(model, face: torch.Tensor) -> torch.Tensor:
    """Face [N, 3, H, W] -> [N, 3, S, S] float32 on the model's device, S the generator's size."""
    face = face.detach().to(model.device, torch.float32).clone()
    if face.shape[-2:] != (model.size, model.size):
        face = F.interpolate(face, size=(model.size, model.size), mode="bilinear", align_corners=False,
                             antialias=min(face.shape[-2:]) > model.size)
    return face


# -- learning-rate schedule -------------------------------------------------------------------------
def ramp(step: int, steps: int) -> float:
    """Learning-rate factor at ``step`` of ``steps``: linear warm-up over the first
    :data:`WARMUP`, cosine ramp-down over the last :data:`RAMPDOWN` of the steps."""
    t = step / max(steps, 1)
    down = min(1.0, (1.0 - t) / RAMPDOWN)
    return (0.5 - 0.5 * math.cos(down * math.pi)) * min(1.0, (t + 1 / max(steps, 1)) / WARMUP)


# -- the methods ------------------------------------------------------------------------------------
def synthesis_copy(model):
    """A copy of ``model`` (a BlendGAN) whose synthesis weights are its own; the mapping
    networks, the encoders and the fixed noise maps are shared with ``model``."""
    g = model.generator
    tuned = copy.copy(g)
    tuned._parameters, tuned._buffers, tuned._modules = dict(g._parameters), dict(g._buffers), dict(g._modules)
    for name in SYNTHESIS_PARTS:  # (cached Winograd weights are not copied: they are remade on use)
        tuned._modules[name] = copy.deepcopy(g._modules[name])
    out = copy.copy(model)
    out._parameters, out._buffers, out._modules = dict(model._parameters), dict(model._buffers), dict(model._modules)
    out.__dict__.pop("_compiled", None)
    out._modules["generator"] = tuned
    return out


def synthesis_parameters(model) -> list[nn.Parameter]:
    """The weights PTI tunes: those of :data:`SYNTHESIS_PARTS`."""
    return [p for name in SYNTHESIS_PARTS for p in getattr(model.generator, name).parameters()]


def _optimize(model, loss: Reconstruction, start: torch.Tensor, steps: int, lr: float, pull: float,
              progress: Progress | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adam on W+ from ``start`` [N, n_latent, 512] -> (best W+, its loss [N], start's loss [N])."""
    g = model.generator
    anchor = start.detach().float()
    w = anchor.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    best_w, best, first = anchor.clone(), None, None
    for step in range(steps + 1):
        last = step == steps
        with torch.set_grad_enabled(not last):
            image = g(w.to(model.dtype))
            measure = loss.measure(image)
            if not last:
                objective = measure + loss.extras(image) + pull * (w - anchor).square().mean((1, 2))
                grad, = torch.autograd.grad(objective.sum(), [w])
        # keep each face's best iterate so far (the step's loss is that of the current w)
        measure = measure.detach()
        if best is None:
            first, best = measure.clone(), measure.clone()
        else:
            better = measure < best
            best = torch.where(better, measure, best)
            best_w[better] = w.detach()[better]
        if last:
            break
        for group in opt.param_groups:
            group["lr"] = lr * ramp(step, steps)
        w.grad = grad
        opt.step()
        if progress is not None:
            progress("optimize", step + 1, steps, float(measure.mean()))
    return best_w, best, first


def _tune(model, origin, loss: Reconstruction, pivot: torch.Tensor, steps: int, lr: float,
          progress: Progress | None) -> torch.Tensor:
    """Tune ``model``'s synthesis weights (in place: a :func:`synthesis_copy` of ``origin``) to
    reproduce the target from ``pivot`` [1, n_latent, 512]; the best weights are kept (``origin``'s
    when no step improved on them) -> their loss [1]."""
    params = synthesis_parameters(model)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    pivot = pivot.detach().to(model.dtype)
    best, saved = None, None
    for step in range(steps + 1):
        last = step == steps
        with torch.set_grad_enabled(not last):
            image = model.generator(pivot)
            measure = loss.measure(image)
            if not last:
                grads = torch.autograd.grad((measure + loss.extras(image)).sum(), params)
        measure = measure.detach()
        if best is None:  # the starting weights
            best = measure.clone()
        elif bool(measure < best):
            best, saved = measure.clone(), [p.detach().clone() for p in params]
        if last:
            break
        for p, grad in zip(params, grads):
            p.grad = grad
        opt.step()
        if progress is not None:
            progress("tune", step + 1, steps, float(measure))
    with torch.no_grad():
        for p, value in zip(params, synthesis_parameters(origin) if saved is None else saved):
            p.copy_(value)
            p.grad = None
            p.requires_grad_(False)
    return best


def invert(model, face: torch.Tensor, method: str = "optimize", steps: int = defaults.INVERT_STEPS, *,
           generator: torch.Generator | None = None, lr: float = defaults.INVERT_LR,
           tune_lr: float = defaults.INVERT_TUNE_LR, pull: float = defaults.INVERT_PULL, lpips: float = 0.0,
           identity: str | os.PathLike | nn.Module | None = None,
           identity_weight: float = defaults.INVERT_IDENTITY_WEIGHT,
           start: torch.Tensor | None = None, progress: Progress | None = None) -> Inversion:
    """Invert ``face`` [N, 3, H, W] in [-1, 1] with ``method`` (see the module doc) -> :class:`Inversion`.

    ``steps``: Adam steps on W+ (``'optimize'``, and the pivot of ``'pti'``) and, for
    ``'pti'``, as many again on the synthesis weights (N must be 1).  ``lr``: peak learning
    rate on W+; ``tune_lr``: PTI's; ``pull``: weight of ``mean((w − w_pSp)²)`` in the
    objective; ``lpips``: weight of an LPIPS term (needs the ``lpips`` package; 0 = off);
    ``identity``: an ArcFace IR-SE50 file (``model_ir_se50.pth``) or loaded
    :class:`blendgan.models.arcface.IdentityNet` adds ``identity_weight·(1 − cos)`` of the
    identity embeddings (off by default).
    ``start``: W+ [N, n_latent, 512] to start from instead of the pSp codes.  ``generator``:
    accepted for a stable signature; the methods draw no random numbers (fixed noise maps),
    so the results are the same with any generator or none.  ``progress(stage, step, steps,
    loss)`` is called after each step.  Memory: one copy of the synthesis weights for PTI
    plus the activations of N faces.
    """
    check_settings(method, steps)
    check_face(face)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise UsageError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if method == "pti" and face.shape[0] != 1:
        raise UsageError(f"pti tunes the generator to one face: invert one face at a time, got a batch of "
                         f"{face.shape[0]}")
    if start is None and model.psp is None:
        raise UsageError("inversion starts from the pSp codes: load the model with psp_encoder=...")
    began = time.perf_counter()
    with torch.inference_mode(False), torch.no_grad():
        face = face.clone()
        target = prepare_target(model, face)
        if start is None:
            start = model.encode_face(face)
        elif start.ndim != 3 or start.shape[0] != face.shape[0] or start.shape[1:] != (model.n_latent,
                                                                                     model.generator.style_dim):
            raise UsageError(f"start must be [{face.shape[0]}, {model.n_latent}, {model.generator.style_dim}], "
                             f"got {tuple(start.shape)}")
        start = start.detach().to(model.device).clone()
        if identity is not None and not isinstance(identity, nn.Module):
            identity = load_identity(identity)
        if identity is not None:
            identity = identity.to(model.device)
        loss = Reconstruction(model, target, lpips, identity, identity_weight)
        if method == "psp" or steps == 0 and method == "optimize":
            first = loss.measure(model.generator(start.to(model.dtype)))
            return Inversion(start.to(model.dtype), model, first, first.clone(), method, steps,
                             time.perf_counter() - began)
        w, best, first = _optimize(model, loss, start, steps, lr, pull, progress)
        result = model
        if method == "pti":
            result = synthesis_copy(model)
            best = _tune(result, model, loss, w, steps, tune_lr, progress)
    return Inversion(w.detach().to(model.dtype), result, best.detach(), first.detach(), method, steps,
                     time.perf_counter() - began)


def describe(inv: Inversion, name: str = "face") -> str:
    """One line for a job's log: ``name: optimize (100 steps): loss 0.412 -> 0.215 in 63.0 s``."""
    before = ", ".join(f"{v:.4f}" for v in inv.start_loss.tolist())
    after = ", ".join(f"{v:.4f}" for v in inv.loss.tolist())
    return f"{name}: {inv.method} ({inv.steps} steps): loss {before} -> {after} in {inv.seconds:.1f} s"


def settings_of(method: str, steps: int | None, **options) -> Settings:
    """Checked :class:`Settings` (``steps`` None: the default)."""
    steps = defaults.INVERT_STEPS if steps is None else steps
    check_settings(method, steps)
    return Settings(method, steps, **options)


__all__ = ["METHODS", "Inversion", "Settings", "Reconstruction", "invert", "describe", "synthesis_copy",
           "check_settings", "check_face", "settings_of"]
