"""What a run shows while it goes: metric means between log lines, ``log.jsonl`` and TensorBoard
scalars, the training rate, and sample grids.

Only the main process writes; the means are averaged over every process first.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from .. import io
from ..errors import TrainError
from ..runtime import DistEnv
from .collectives import all_reduce_mean


class MetricMeans:
    """Per-metric means over the steps since the last :meth:`pop`.

    A metric may be missing from some steps (a regulariser applied every k steps): each is
    averaged over the steps that reported it.
    """

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0) + v.detach().float()
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self, env: DistEnv) -> dict[str, float]:
        """The means, averaged over the processes, by sorted name; then start afresh."""
        keys = sorted(self.sums)
        values = all_reduce_mean(torch.stack([self.sums[k] / self.counts[k] for k in keys]), env).tolist()
        self.sums, self.counts = {}, {}
        return dict(zip(keys, values))


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
    """Thousands of images per second over the steps since the last :meth:`rate` call."""

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


def format_rate(kimg_per_s: float) -> str:
    return f"{kimg_per_s:.3f} kimg/s" if kimg_per_s < 10 else f"{kimg_per_s:.1f} kimg/s"


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
