"""Video files: streaming H.264 (or MPEG-4) writers and looping GIFs, all written atomically."""
from __future__ import annotations

import importlib.util
import math
import numbers
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..errors import UsageError
from .files import atomic_path, release_temp, temp_beside

#: output containers by suffix (H.264 video)
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_CRF = 18


#: video containers store a frame rate as a ratio of 32-bit integers
MAX_RATE_TERM = 2**31 - 1
#: a GIF stores each frame's duration in hundredths of a second (16 bits); browsers show
#: frames of less than 2/100 s for 1/10 s, so 2 is the shortest honoured
GIF_DELAYS = (2, 65535)


def frame_rate(fps: float) -> Fraction:
    """``fps`` as the ratio a video stream stores: the nearest with a denominator up to 1001
    (30000/1001 for 29.97) when that is within 1e-4, else the exact ratio.  A rate no video
    file can store is a one-line :class:`blendgan.errors.UsageError`; none is replaced by another."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise UsageError(f"frame rate must be a finite number > 0, got {fps!r}")
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0 or abs(rate - Fraction(fps)) > Fraction(fps) / 10_000:
        rate = Fraction(fps).limit_denominator(MAX_RATE_TERM)
    if rate <= 0 or rate.numerator > MAX_RATE_TERM or rate.denominator > MAX_RATE_TERM:
        raise UsageError(f"frame rate {fps:g} cannot be stored in a video file "
                         f"(from 1/{MAX_RATE_TERM} to {MAX_RATE_TERM} frames per second)")
    return rate


def gif_delay(fps: float) -> int:
    """The duration of a GIF frame at ``fps``, in hundredths of a second (the nearest a GIF
    stores); a rate outside what GIFs can show is a one-line :class:`blendgan.errors.UsageError`."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise UsageError(f"frame rate must be a finite number > 0, got {fps!r}")
    delay = round(100 / fps)
    low, high = GIF_DELAYS
    if not low <= delay <= high:
        raise UsageError(f"a GIF cannot show {fps:g} frames per second (from {100 / high:.4g} to {100 / low:g}); "
                         "write an mp4 instead")
    return delay


def add_h264_stream(container, width: int, height: int, fps: float, crf: int = DEFAULT_CRF):
    """Add a browser-playable H.264 stream (libx264, yuv420p, ``crf``, preset medium) of
    ``width`` x ``height`` at ``fps`` (:func:`frame_rate`) to an open PyAV output
    ``container``; returns it."""
    stream = container.add_stream("libx264", rate=frame_rate(fps))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"crf": str(crf), "preset": "medium"}
    return stream


def container_options(fmt: str) -> dict:
    """Muxer options: ``+faststart`` (the index first, so browsers play while loading) for mp4/mov."""
    return {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}


def write_gif(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 15) -> Path:
    """Write RGB uint8 frames [H, W, 3] as a looping GIF, atomically (Pillow).

    For short loops: Pillow keeps every frame until the file is written, and GIF stores
    frame durations in hundredths of a second (:func:`gif_delay`: fps is rounded accordingly).
    """
    from PIL import Image
    path = Path(path)
    duration_ms = 10 * gif_delay(fps)
    images = (Image.fromarray(np.ascontiguousarray(f)) for f in frames)
    first = next(images, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    with atomic_path(path) as tmp:
        first.save(tmp, format="GIF", save_all=True, append_images=images, duration=duration_ms, loop=0)
    return path


def video_backend() -> str:
    """``'pyav'`` (H.264, browser-playable) when PyAV is installed, else ``'opencv'`` (mp4v)."""
    return "pyav" if importlib.util.find_spec("av") is not None else "opencv"


class VideoWriter:
    """Stream RGB uint8 frames into an .mp4, written atomically on :meth:`close`.

    With PyAV: H.264 (libx264), yuv420p, ``+faststart`` — plays in browsers.  Without it:
    OpenCV's MPEG-4 Part 2 (``mp4v``), which most desktop players accept.  Frames are
    encoded as they arrive, so memory does not grow with the video length.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30, crf: int = DEFAULT_CRF,
                 backend: str | None = None):
        self.path = Path(path)
        self.fps = frame_rate(fps)
        self.crf = crf
        self.backend = backend or video_backend()
        self._tmp = temp_beside(self.path)
        self._container = self._stream = self._cv = None
        self._closed = False
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def _open(self, height: int, width: int) -> None:
        if self.backend == "pyav":
            import av
            self._container = av.open(str(self._tmp), mode="w", format="mp4", options=container_options("mp4"))
            self._stream = add_h264_stream(self._container, width, height, self.fps, self.crf)
        else:
            self._cv = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(self.fps),
                                       (width, height))
            if not self._cv.isOpened():
                raise RuntimeError(f"{self.path}: OpenCV could not open an mp4v video writer")

    def write(self, frames: np.ndarray) -> None:
        """Append RGB uint8 frames [T, H, W, 3] (or one [H, W, 3]); H, W are made even."""
        if frames.ndim == 3:
            frames = frames[None]
        h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p needs even sizes
        frames = frames[:, :h, :w]
        if self._size is None:
            self._open(h, w)
            self._size = (h, w)
        elif self._size != (h, w):
            raise ValueError(f"{self.path}: frame size {w}x{h} differs from the video's "
                             f"{self._size[1]}x{self._size[0]}")
        for frame in frames:
            if self._container is not None:
                import av
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in self._stream.encode(vf):
                    self._container.mux(packet)
            else:
                self._cv.write(np.ascontiguousarray(frame[:, :, ::-1]))
            self.frames += 1

    def close(self, ok: bool = True) -> None:
        """Flush and move the file into place (``ok``), or discard it.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._container is not None:
                if ok:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
            if self._cv is not None:
                self._cv.release()
            if ok and self.frames == 0:
                raise RuntimeError(f"{self.path}: no frames were written")
            if ok:
                os.replace(self._tmp, self.path)
        finally:
            self._container = self._cv = None
            if self._tmp.exists():
                self._tmp.unlink()
            release_temp(self._tmp)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close(ok=True)
        else:
            try:
                self.close(ok=False)
            except Exception:  # the original exception matters more
                pass


def write_video(batches: Iterable[np.ndarray], path: str | os.PathLike, fps: float) -> Path:
    """Write batches of RGB uint8 frames [T, H, W, 3] to ``path``, atomically: a looping GIF
    when it ends in ``.gif`` (:func:`write_gif`), else a streamed video (:class:`VideoWriter`)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        return write_gif((frame for batch in batches for frame in batch), path, fps)
    with VideoWriter(path, fps=fps) as writer:
        for batch in batches:
            writer.write(batch)
    return path
