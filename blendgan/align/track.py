"""Following one face through the frames of a video, with landmarks steadied over time.

The face followed is the largest one at first, then whichever stays nearest; its 68
landmarks are smoothed with a One-Euro filter (steady when the head is still, little lag
when it moves).
"""
from __future__ import annotations

import numpy as np

from .detect import FaceAligner

DEFAULT_SMOOTH = 1.0           # One-Euro minimum cutoff (Hz): lower = steadier, more lag
SMOOTH_BETA = 20.0             # Hz added per face-width/s of landmark speed (less lag when moving)
SMOOTH_D_CUTOFF = 1.0          # cutoff (Hz) of the speed estimate
TRACK_JUMP = 0.5               # a box further than this (in box sizes) from the last face is a new face


class OneEuroFilter:
    """One-Euro filter (Casiez et al., CHI 2012) over point sets [K, 2] sampled at ``fps``.

    An exponential smoother whose cutoff rises with speed: ``min_cutoff`` Hz at rest, plus
    ``beta`` Hz per unit of speed.  Speed is the mean point speed divided by ``scale``
    (pass the face's size, so it is in face sizes per second) and is shared by all
    points, so the shape is smoothed as a whole and never distorted.
    """

    def __init__(self, fps: float, min_cutoff: float = DEFAULT_SMOOTH, beta: float = SMOOTH_BETA,
                 d_cutoff: float = SMOOTH_D_CUTOFF):
        if fps <= 0 or min_cutoff <= 0:
            raise ValueError(f"fps and min_cutoff must be > 0, got {fps}, {min_cutoff}")
        self.dt = 1.0 / fps
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _alpha(self, cutoff: float) -> float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, x: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Next sample [K, 2] -> its smoothed value [K, 2] (the first sample passes as it is)."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        rate = (x - self._x) / self.dt
        self._dx = self._dx + self._alpha(self.d_cutoff) * (rate - self._dx)
        speed = float(np.linalg.norm(self._dx, axis=-1).mean()) / max(scale, 1e-6)
        self._x = self._x + self._alpha(self.min_cutoff + self.beta * speed) * (x - self._x)
        return self._x.copy()


class FaceTracker:
    """Landmarks [68, 2] of one face through a sequence of frames (None where it is not found).

    Starts on the largest confirmed face in the frame; then searches only around the last
    box and follows the nearest face there (within ``TRACK_JUMP`` box sizes); when that
    fails the whole frame is searched again and the smoothing restarts.  ``smooth``: the
    One-Euro filter's minimum cutoff in Hz; None/0: raw landmarks.
    """

    def __init__(self, aligner: FaceAligner, fps: float, smooth: float | None = DEFAULT_SMOOTH):
        self.aligner = aligner
        self.filter = OneEuroFilter(fps, smooth) if smooth else None
        self._box: tuple[float, float, float, float] | None = None

    def _pick(self, rgb: np.ndarray):
        if self._box is not None:  # look near the face followed so far
            cx, cy, s = _box_centre_size(self._box)

            def dist(b):
                bx, by, _ = _box_centre_size(b)
                return np.hypot(bx - cx, by - cy)
            near = [b for b in self.aligner.detect_near(rgb, self._box) if dist(b) <= TRACK_JUMP * s]
            if near:
                return min(near, key=dist)
            self.reset()  # lost it: search the whole frame, confirming candidates
        boxes = self.aligner.detect(rgb)
        return boxes[0] if boxes else None

    def reset(self) -> None:
        self._box = None
        if self.filter is not None:
            self.filter.reset()

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        box = self._pick(rgb)
        if box is None:
            self.reset()
            return None
        self._box = box
        lm = self.aligner.landmarks_in(rgb, box)
        if self.filter is None:
            return lm
        scale = float(np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0)))) * 4  # about the face width
        return self.filter(lm, scale)


def _box_centre_size(box) -> tuple[float, float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, max(box[2] - box[0], box[3] - box[1])
