"""Shared pieces of the training commands: collectives, checkpoints, logging, stopping.

Nothing here seeds or reads the global RNG for training randomness: every stream is a
``torch.Generator`` seeded from ``(seed, purpose, rank)`` by
:func:`blendgan.runtime.derive_seed`, and its state is saved in the checkpoints.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .. import io
from ..checkpoint import canonical_key, load_file
from ..errors import CheckpointError, TrainError
from ..runtime import DistEnv

log = logging.getLogger("blendgan")

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"


def all_reduce_mean(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Average a tensor over the processes (identity for one process)."""
    if env.distributed:
        values = values.clone()
        dist.all_reduce(values)
        values /= env.world
    return values


def any_process(flag: bool, env: DistEnv) -> bool:
    """True on every process when ``flag`` is true on any of them."""
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums the gradients of every process and keeps
    this process's slice (the gradient of the sum of all processes' losses)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """[B, ...] per process -> [world·B, ...] (rank order), differentiable; identity for one process."""
    return _GatherWithGrad.apply(x) if env.distributed else x


def gather_objects(obj: Any, env: DistEnv) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not env.distributed:
        return [obj]
    out: list = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


# -- small helpers ------------------------------------------------------------------------------
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


def parse_channels(text: str | None, size: int) -> dict[int, int] | None:
    """``"32,32,16,16"`` (widths from 4px upward, one per resolution up to ``size``) -> {4: 32, ...}."""
    if not text:
        return None
    try:
        widths = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise TrainError(f"--channels {text!r}: expected comma-separated integers, e.g. 32,32,16,16") from None
    n = int(math.log2(size)) - 1
    if len(widths) != n or min(widths) < 1:
        raise TrainError(f"--channels {text!r}: a {size}px model needs {n} positive widths "
                         f"(resolutions 4..{size}), got {len(widths)}")
    return {2 ** (i + 2): w for i, w in enumerate(widths)}


def check_size(size: int) -> None:
    if size < 8 or size > 1024 or size & (size - 1):
        raise TrainError(f"--size {size}: must be a power of two from 8 to 1024")


# flags that describe this invocation, never taken from a resumed checkpoint
RUN_FLAGS = frozenset({"resume", "outdir", "device", "workers", "quiet", "tensorboard", "cache", "init", "func",
                       "command", "command_name"})


def merge_resumed_args(args: argparse.Namespace, saved: dict, immutable: set[str] | frozenset[str]) -> None:
    """On resume: every flag not given on the command line takes the checkpoint's value.

    A given flag in ``immutable`` (the architecture) must equal the saved one.  Without
    ``args._explicit`` (a namespace built by hand) every attribute counts as given.
    """
    explicit = getattr(args, "_explicit", None)
    cache = saved.get("cache")
    if getattr(args, "cache", "") is None and cache and Path(cache).is_dir():
        # the run's decoded-data cache: without it a resume decodes every image again, and
        # under DDP recomputes the style table, which can differ in the last bits
        args.cache = cache
        log.info("resume: --cache %s (from the checkpoint)", cache)
    for key, value in saved.items():
        if key in RUN_FLAGS or key.startswith("_") or not hasattr(args, key):
            continue
        given = explicit is None or key in explicit
        current = getattr(args, key)
        if not given or (current is None and value is not None and key not in immutable):
            setattr(args, key, value)
        elif current != value:
            if key in immutable:
                raise TrainError(f"--{key.replace('_', '-')} {current} differs from the resumed run's {value}")
            log.info("resume: --%s changed from %r to %r", key.replace("_", "-"), value, current)


def plain_args(args: argparse.Namespace) -> dict:
    """The parsed flags as a plain dict (str/int/float/bool/None/list), for ``weights_only`` files."""
    out = {}
    for key, value in vars(args).items():
        if callable(value) or key.startswith("_"):
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, (str, int, float, bool, list)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def format_rate(kimg_per_s: float) -> str:
    return f"{kimg_per_s:.3f} kimg/s" if kimg_per_s < 10 else f"{kimg_per_s:.1f} kimg/s"


# -- checkpoints --------------------------------------------------------------------------------
def atomic_save(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename onto it."""
    path = Path(path)
    with io.atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


class CheckpointWriter:
    """``outdir/checkpoints/{step:06d}.pt`` + ``latest.pt`` (a hard link, else a copy), pruned to ``keep``."""

    def __init__(self, outdir: str | os.PathLike, keep: int = 3):
        self.dir = Path(outdir) / CHECKPOINT_DIR
        self.keep = keep

    @property
    def latest(self) -> Path:
        return self.dir / LATEST

    def save(self, obj: dict, step: int) -> Path:
        path = atomic_save(obj, self.dir / f"{step:06d}.pt")
        tmp = io.temp_beside(self.latest)
        tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:  # no hard links on this filesystem
            shutil.copyfile(path, tmp)
        os.replace(tmp, self.latest)
        if self.keep > 0:
            old = sorted((p for p in self.dir.glob("[0-9]*.pt") if p.stem.isdigit()), key=lambda p: int(p.stem))
            for p in old[:-self.keep]:
                p.unlink(missing_ok=True)
        return path


def resolve_resume(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder / its ``checkpoints`` folder (-> ``latest.pt``)."""
    p = Path(path)
    for cand in (p, p / CHECKPOINT_DIR / LATEST, p / LATEST):
        if cand.is_file():
            return cand
    raise TrainError(f"--resume {path}: no checkpoint there (expected a .pt file or a run folder with "
                     f"{CHECKPOINT_DIR}/{LATEST})")


def settle_outdir(args: argparse.Namespace, resume_path: Path | None) -> None:
    """``--outdir`` defaults to the resumed run's folder; without ``--resume`` it is required."""
    if args.outdir is None:
        if resume_path is None:
            raise TrainError("give the run folder with --outdir")
        parent = resume_path.parent
        args.outdir = str(parent.parent if parent.name == CHECKPOINT_DIR else parent)


def load_training_checkpoint(path: str | os.PathLike, kind: str) -> dict:
    """Read a checkpoint written by this package (``weights_only``); ``kind`` is checked."""
    try:
        obj = load_file(path)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    if not isinstance(obj, dict) or obj.get("format") != kind:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise TrainError(f"{path}: not a {kind!r} training checkpoint (format: {found!r})")
    return obj


def rng_states(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    return {name: g.get_state() for name, g in generators.items()}


def set_rng_states(generators: dict[str, torch.Generator], states: dict) -> None:
    for name, g in generators.items():
        g.set_state(states[name])


# -- style encoder weights ----------------------------------------------------------------------
VGG_PREFIX = "embedder.feature_extractor.vgg_layers."
MLP_PREFIX = "embedder_mlp."


def _normalise_encoder_keys(sd: dict) -> dict:
    """Map the layouts we accept onto :class:`~blendgan.models.StyleEncoder` keys."""
    out = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = canonical_key(key)
        if key.startswith("features."):          # torchvision vgg19().state_dict()
            key = VGG_PREFIX + key[len("features."):]
        elif "feature_extractor.vgg_layers." in key:
            key = VGG_PREFIX + key.split("feature_extractor.vgg_layers.", 1)[1]
        elif "embedder_mlp." in key:
            key = MLP_PREFIX + key.split("embedder_mlp.", 1)[1]
        else:
            continue
        out[key] = value
    return out


def load_style_encoder_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Style-encoder weights from any file we know, with :class:`StyleEncoder` keys.

    Accepted: ``train-style-encoder`` output (``'style_encoder'`` entry), a generator
    checkpoint (``'g_ema'`` with ``embedder.*``, e.g. the official ``blendgan.pt``), a bare
    state dict with or without prefixes, or torchvision's ``vgg19`` state dict
    (``features.<i>.*``, VGG part only).  The result may hold only the VGG part.
    """
    try:
        obj = load_file(path)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    if not isinstance(obj, dict):
        raise TrainError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if isinstance(obj.get("style_encoder"), dict):
        sd = obj["style_encoder"]
    elif isinstance(obj.get("g_ema"), dict):
        sd = {k[len("embedder."):]: v for k, v in obj["g_ema"].items() if k.startswith("embedder.")}
    elif isinstance(obj.get("state_dict"), dict):
        sd = obj["state_dict"]
    else:
        sd = obj
    sd = _normalise_encoder_keys(sd)
    if not sd:
        raise TrainError(f"{path}: no style-encoder weights found (expected 'embedder_mlp.*' and/or VGG19 "
                         f"'feature_extractor.vgg_layers.*' / torchvision 'features.*' keys)")
    return sd


def assign_style_encoder(encoder: nn.Module, sd: dict, path, need_mlp: bool) -> tuple[bool, bool]:
    """Copy the VGG and (if present) MLP weights of ``sd`` into ``encoder``; returns (vgg, mlp) found."""
    expected = encoder.state_dict()
    vgg_keys = [k for k in expected if k.startswith(VGG_PREFIX)]
    mlp_keys = [k for k in expected if k.startswith(MLP_PREFIX)]
    has_vgg = all(k in sd for k in vgg_keys)
    has_mlp = all(k in sd for k in mlp_keys)
    if need_mlp and not has_mlp:
        raise TrainError(f"{path}: has no complete style-encoder MLP ('embedder_mlp.*')")
    use = (vgg_keys if has_vgg else []) + (mlp_keys if has_mlp else [])
    if not use:
        raise TrainError(f"{path}: neither the complete VGG19 nor the complete MLP of a style encoder")
    for k in use:
        if tuple(sd[k].shape) != tuple(expected[k].shape):
            raise TrainError(f"{path}: style-encoder tensor {k!r} is {tuple(sd[k].shape)}, expected "
                             f"{tuple(expected[k].shape)} (does --style-dim match?)")
    encoder.load_state_dict({k: sd[k].float() for k in use}, strict=False)
    return has_vgg, has_mlp


@torch.no_grad()
def init_vgg_random(encoder: nn.Module) -> None:
    """He-normal (fan-in) VGG convolutions with zero biases: the fallback when no VGG19 weights
    are available.  Unlike PyTorch's default init it keeps activations at scale through the 16
    layers, so the Gram vectors are not vanishingly small.  Draws from the global RNG: call
    inside :func:`seeded_init`."""
    for m in encoder.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# -- stopping -----------------------------------------------------------------------------------
class StopRequest:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a flag checked between steps.

    The first signal asks the loop to finish the current step, save a checkpoint and exit;
    a second Ctrl-C raises ``KeyboardInterrupt`` at once.  Handlers are installed only in the
    main thread and restored on exit.
    """

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s received: finishing this step, saving a checkpoint, then stopping "
                    "(Ctrl-C again to quit at once)", signal.Signals(signum).name)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# -- logging ------------------------------------------------------------------------------------
class MetricLogger:
    """JSON lines in ``outdir/log.jsonl`` and, when importable, TensorBoard scalars in ``outdir/tb``.

    On resume from ``step`` the lines of later steps (written after that checkpoint) are dropped.
    Only the main process writes.
    """

    def __init__(self, outdir: str | os.PathLike, enabled: bool, resume_step: int = 0,
                 tensorboard: str = "auto"):
        self.enabled = enabled
        self.path = Path(outdir) / "log.jsonl"
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
            with io.atomic_path(self.path) as tmp:
                tmp.write_text("".join(k + "\n" for k in kept))
        if tensorboard != "off":
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(Path(outdir) / "tb"), purge_step=resume_step + 1 if resume_step else None)
            except ImportError:
                if tensorboard == "on":
                    raise TrainError("--tensorboard on: the tensorboard package is not installed "
                                     "(pip install tensorboard)") from None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            step = record["step"]
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


class RateMeter:
    """Images per second over the steps since the last :meth:`rate` call."""

    def __init__(self):
        self.t = time.perf_counter()
        self.images = 0

    def add(self, images: int) -> None:
        self.images += images

    def rate(self) -> float:
        now = time.perf_counter()
        r = self.images / max(now - self.t, 1e-9) / 1000.0
        self.t, self.images = now, 0
        return r


def image_grid(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Tile rows of RGB uint8 images ([K, H, W, 3] each, equal H, W) with ``pad`` px gaps."""
    n_cols = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[1:3]
    grid = np.full((len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = img
    return grid
