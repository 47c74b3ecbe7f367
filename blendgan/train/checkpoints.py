"""A run folder's checkpoints: writing (atomically, pruned by step), finding the one to resume,
reading it back, and the random-generator states they carry.

Layout: ``OUTDIR/checkpoints/{step:06d}.pt`` and ``latest.pt`` (a hard link to the newest, else
a copy).  Every file is a dict that ``torch.load(..., weights_only=True)`` reads; its
``'format'`` entry names the trainer that wrote it.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import torch

from .. import io
from ..checkpoint import load_file, save_file
from ..errors import CheckpointError, TrainError

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"


def atomic_save(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename onto it; a failed write
    (a full disk ...) is a one-line ``OSError`` naming ``path`` (:func:`blendgan.checkpoint.save_file`)."""
    return save_file(obj, path)


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
        try:
            tmp.unlink()
            try:
                os.link(path, tmp)
            except OSError:  # no hard links on this filesystem
                shutil.copyfile(path, tmp)
            os.replace(tmp, self.latest)
        finally:
            tmp.unlink(missing_ok=True)
            io.release_temp(tmp)
        if self.keep > 0:
            # by step number: 1000000.pt sorts before 999000.pt by name
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


def run_folder(outdir: str | None, resume_path: Path | None) -> str:
    """The run folder: ``outdir`` when given, else the resumed checkpoint's run folder."""
    if outdir is not None:
        return outdir
    if resume_path is None:
        raise TrainError("give the run folder with --outdir")
    parent = resume_path.parent
    return str(parent.parent if parent.name == CHECKPOINT_DIR else parent)


def load_training_checkpoint(path: str | os.PathLike, kind: str) -> dict:
    """Read a checkpoint written by this package (``weights_only``); ``kind`` is checked, and so
    is every number in it: a NaN or infinite weight, optimizer moment or statistic (a damaged
    file, or a run that diverged) would only carry on as garbage."""
    try:
        obj = load_file(path)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    if not isinstance(obj, dict) or obj.get("format") != kind:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise TrainError(f"{path}: not a {kind!r} training checkpoint (format: {found!r})")
    bad = first_non_finite(obj)
    if bad is not None:
        raise TrainError(f"{path}: {bad} holds NaN or infinite values; resume from an earlier checkpoint")
    step = obj.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise TrainError(f"{path}: 'step' is {step!r}, expected a whole number >= 0")
    return obj


def first_non_finite(obj, where: str = "") -> str | None:
    """The key path of the first float tensor or float in ``obj`` (nested dicts and lists) that
    is not finite, else None."""
    if isinstance(obj, torch.Tensor):
        finite = not obj.is_floating_point() or bool(torch.isfinite(obj.sum(dtype=torch.float64)))
        return None if finite else (where or "a tensor")
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "a number")
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = first_non_finite(value, f"{where}.{key}" if where else repr(key))
        if found is not None:
            return found
    return None


def rng_states(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """Each generator's state (uint8 tensor) by name."""
    return {name: g.get_state() for name, g in generators.items()}


def set_rng_states(generators: dict[str, torch.Generator], states: dict) -> None:
    """Restore :func:`rng_states`'s output into generators of the same names."""
    for name, g in generators.items():
        g.set_state(states[name])
