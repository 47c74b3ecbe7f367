"""Training data: folders of images, an optional memory-mapped uint8 cache, resumable sampling.

* :class:`ImageSource`: the images of a folder at ``size`` x ``size`` (centre-cropped to a
  square, then resized), either decoded on demand or held in a ``.npy`` cache
  ([N, size, size, 3] uint8, memory-mapped) built once under ``--cache``.
* :class:`IndexStream`: an endless sequence of dataset indices, epoch by epoch, each epoch a
  permutation drawn from ``(seed, epoch)``; its whole state is two integers.  All processes
  share it and each takes its own slice of every global batch.
* :class:`BatchLoader`: prefetches the next batch in a thread; its state is the stream's
  state before the batch it has not handed out yet, so resuming repeats nothing and skips
  nothing.
* :func:`random_view`: the colour-preserving augmentation of the contrastive style-encoder
  training (random resized crop, flip, small rotation and perspective in one warp).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from .. import io
from ..errors import TrainError
from ..runtime import DistEnv, derive_seed

log = logging.getLogger("blendgan")


# -- images ---------------------------------------------------------------------------------------
def load_square(path: str | os.PathLike, size: int) -> np.ndarray:
    """Read an image, centre-crop it to a square and resize to [size, size, 3] uint8 RGB.

    Downscaling uses area filtering, upscaling bicubic.
    """
    img = io.read_image(path)
    h, w = img.shape[:2]
    if h != w:
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        img = img[y:y + s, x:x + s]
    if img.shape[0] != size:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
        img = cv2.resize(img, (size, size), interpolation=interp)
    return np.ascontiguousarray(img)


def to_float(batch: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] in [-1, 1] on ``device``."""
    x = torch.as_tensor(np.ascontiguousarray(batch)).to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def folder_fingerprint(files: Sequence[Path], size: int) -> str:
    """Hash of file names, sizes and modification times (changes when the folder does)."""
    h = hashlib.sha1(str(size).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


class ImageSource:
    """The images of one folder at a fixed size; :meth:`get` returns uint8 [B, size, size, 3]."""

    def __init__(self, root: str | os.PathLike, size: int, name: str, array: np.ndarray | None = None,
                 workers: int = 4, files: Sequence[Path] | None = None):
        self.root = Path(root)
        self.size = size
        self.name = name
        self.files = list(files) if files is not None else _list(self.root, name)
        self.array = array
        self.fingerprint = folder_fingerprint(self.files, size)
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        #: indices of files that could not be read (each reported once; a neighbour stands in)
        self.unreadable: set[int] = set()
        self._guard = threading.Lock()

    def __len__(self) -> int:
        return len(self.files)

    @property
    def cached(self) -> bool:
        return self.array is not None

    def decode(self, i: int) -> np.ndarray:
        """Image ``i``; when it cannot be read (corrupt, removed, not a regular file ...) it is
        reported once and the next readable image stands in, so that training goes on and a
        resumed run reads exactly what the first one read."""
        n = len(self.files)
        for k in range(n):
            j = (i + k) % n
            if j in self.unreadable:
                continue
            try:
                return load_square(self.files[j], self.size)
            except io.ImageError as exc:
                with self._guard:
                    if j not in self.unreadable:
                        self.unreadable.add(j)
                        log.warning("%s; skipped, the next image stands in (%d unreadable in the %s dataset "
                                    "so far)", exc, len(self.unreadable), self.name)
        raise TrainError(f"{self.root}: no image of the {self.name} dataset can be read")

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [B, size, size, 3] for dataset ``indices``."""
        idx = [int(i) for i in indices]
        if self.array is not None:
            order = np.argsort(idx)  # sorted reads are kinder to a memory map
            out = np.empty((len(idx), self.size, self.size, 3), np.uint8)
            out[order] = self.array[np.asarray(idx)[order]]
            return out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"decode-{self.name}")
        return np.stack(list(self._pool.map(self.decode, idx)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _list(root: Path, name: str) -> list[Path]:
    try:
        files = io.list_images(root)
    except io.ImageError as exc:
        raise TrainError(f"{name} dataset: {exc}") from None
    if not files:
        raise TrainError(f"{root}: no images in the {name} dataset folder")
    return files


def build_cache(source: ImageSource, path: Path) -> None:
    """Decode every image of ``source`` into ``path`` (a [N, size, size, 3] uint8 .npy), written
    atomically.  The whole file is allocated first, so a disk too small fails at once with an
    ``OSError`` (writing a memory map past the free space would kill the process)."""
    shape = (len(source), source.size, source.size, 3)
    with io.atomic_path(path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        with open(tmp, "r+b") as f:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        with ThreadPoolExecutor(source.workers, thread_name_prefix="cache") as pool:
            for i, img in enumerate(pool.map(source.decode, range(len(source)))):
                arr[i] = img
        arr.flush()
        del arr  # close the map before the file is renamed


def open_source(root: str | os.PathLike, size: int, name: str, cache_dir: str | os.PathLike | None,
                workers: int, env: DistEnv) -> ImageSource:
    """An :class:`ImageSource`, memory-mapped from ``cache_dir`` when given (built there if needed).

    With several processes, local rank 0 builds the cache while the others wait.
    """
    root = Path(root)
    files = _list(root, name)
    if cache_dir is None:
        return ImageSource(root, size, name, None, workers, files)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    source = ImageSource(root, size, name, None, workers, files)
    path = cache_dir / f"{name}-{size}px-{len(files)}-{folder_fingerprint(files, size)}.npy"
    if not io.is_done(path) and env.local_rank == 0:  # (a FIFO or a folder there is replaced)
        log.info("caching %d %s images at %dpx in %s", len(files), name, size, path)
        try:
            build_cache(source, path)
        except OSError as exc:  # a full or read-only disk: train without the cache
            log.warning("%s: cannot write the dataset cache (%s); images are decoded as they are needed",
                        path, exc.strerror or exc)
    env.barrier()
    if not io.is_done(path):
        return source
    arr = np.load(path, mmap_mode="r")
    if arr.shape != (len(files), size, size, 3) or arr.dtype != np.uint8:
        raise TrainError(f"{path}: cache has shape {arr.shape}, expected {(len(files), size, size, 3)}; delete it")
    return ImageSource(root, size, name, arr, workers, files)


# -- sampling -------------------------------------------------------------------------------------
class IndexStream:
    """Endless dataset indices: epoch ``e`` is ``randperm(n)`` seeded by ``(seed, name, e)``.

    State: ``(epoch, pos)``.  :meth:`take` returns the next ``k`` indices.
    """

    def __init__(self, n: int, seed: int, name: str):
        self.n = n
        self.seed = seed
        self.name = name
        self.epoch = 0
        self.pos = 0
        self._perm: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", self.name, self.epoch))
            self._perm = torch.randperm(self.n, generator=g)
        return self._perm

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            perm = self._permutation()
            chunk = perm[self.pos:self.pos + k]
            out.append(chunk)
            k -= len(chunk)
            self.pos += len(chunk)
            if self.pos >= self.n:
                self.epoch, self.pos, self._perm = self.epoch + 1, 0, None
        return torch.cat(out).numpy()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos, self._perm = int(state["epoch"]), int(state["pos"]), None


@dataclass
class Batch:
    images: np.ndarray       # uint8 [B, S, S, 3]
    indices: np.ndarray      # dataset indices [B]


class BatchLoader:
    """This process's share of each global batch, loaded one batch ahead in a thread.

    Global batch = ``batch × world`` consecutive stream indices; process ``rank`` gets the
    slice ``[rank·batch, (rank+1)·batch)``.
    """

    def __init__(self, source: ImageSource, batch: int, env: DistEnv, seed: int, prefetch: bool = True):
        self.source = source
        self.batch = batch
        self.env = env
        self.stream = IndexStream(len(source), seed, source.name)
        self.prefetch = prefetch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"load-{source.name}") if prefetch else None
        self._pending: tuple[dict, np.ndarray, Future | None] | None = None

    def _draw(self) -> tuple[dict, np.ndarray, Future | None]:
        state = self.stream.state_dict()
        idx = self.stream.take(self.batch * self.env.world)
        idx = idx[self.env.rank * self.batch:(self.env.rank + 1) * self.batch]
        fut = self._pool.submit(self.source.get, idx) if self._pool is not None else None
        return state, idx, fut

    def next(self) -> Batch:
        if self._pending is None:
            self._pending = self._draw()
        _, idx, fut = self._pending
        images = fut.result() if fut is not None else self.source.get(idx)
        self._pending = self._draw()
        return Batch(images, idx)

    def state_dict(self) -> dict:
        """Stream position of the next batch :meth:`next` will return."""
        return self._pending[0] if self._pending is not None else self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self._pending is not None and self._pending[2] is not None:
            self._pending[2].cancel()
        self._pending = None
        self.stream.load_state_dict(state)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self.source.close()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image of [N, C, H, W] left-right with probability 1/2 (draws N uniforms)."""
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    flip = flip.to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


# -- contrastive views ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewConfig:
    """Geometric augmentation: crop area fraction in [scale_min, 1], aspect ratio in
    [3/4, 4/3], left-right flip with probability 1/2, rotation within ±rotate degrees,
    perspective: each corner moved by up to ``perspective`` of the crop size.  Colours are
    kept unless ``color_jitter`` j > 0: then the hue turns by up to ±j·180°, the saturation
    is scaled by 2^u, u in [−j, j], and the value by 2^v, v in [−j/2, j/2] (for styles whose
    colours are not part of the style)."""
    size: int
    scale_min: float = 0.3
    rotate: float = 10.0
    perspective: float = 0.05
    flip: bool = True
    color_jitter: float = 0.0


def view_matrix(h: int, w: int, cfg: ViewConfig, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """3x3 homography from output pixels [cfg.size]² to source pixels of an [h, w] image,
    and the crop's shorter side in source pixels."""
    area = h * w
    for _ in range(10):
        s = rng.uniform(cfg.scale_min, 1.0) * area
        r = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = math.sqrt(s * r), math.sqrt(s / r)
        if cw <= w and ch <= h:
            break
    else:
        cw = ch = float(min(h, w))
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    n = cfg.size
    # output square -> crop rectangle, with each corner jittered (perspective)
    dst = np.array([[0, 0], [n, 0], [n, n], [0, n]], np.float32)
    src = np.array([[x0, y0], [x0 + cw, y0], [x0 + cw, y0 + ch], [x0, y0 + ch]], np.float32)
    src += rng.uniform(-cfg.perspective, cfg.perspective, size=(4, 2)).astype(np.float32) * np.float32([cw, ch])
    if cfg.flip and rng.random() < 0.5:
        src = src[[1, 0, 3, 2]]
    m = cv2.getPerspectiveTransform(dst, src).astype(np.float64)
    # rotation about the crop centre, applied in source coordinates
    angle = math.radians(rng.uniform(-cfg.rotate, cfg.rotate))
    cx, cy = x0 + cw / 2, y0 + ch / 2
    c, s_ = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s_, cx - c * cx + s_ * cy], [s_, c, cy - s_ * cx - c * cy], [0, 0, 1]])
    return rot @ m, min(cw, ch)


def random_view(img: np.ndarray, cfg: ViewConfig, rng: np.random.Generator) -> np.ndarray:
    """One augmented view of RGB uint8 [H, W, 3] -> [cfg.size, cfg.size, 3]; colours untouched.

    Pixels that fall outside the image are mirrored in (no black corners, which would
    change the Gram statistics).
    """
    h, w = img.shape[:2]
    m, extent = view_matrix(h, w, cfg, rng)
    shrink = extent / cfg.size
    if shrink > 1.5:  # downscaling a lot: area-resize first so the bilinear warp does not alias
        f = 1.0 / shrink
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        m = np.diag([img.shape[1] / w, img.shape[0] / h, 1.0]) @ m
    out = cv2.warpPerspective(img, m, (cfg.size, cfg.size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT_101)
    return jitter_colors(out, cfg.color_jitter, rng) if cfg.color_jitter > 0 else out


def jitter_colors(img: np.ndarray, j: float, rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 [H, W, 3] with its hue turned by up to ±j·180°, its saturation scaled by
    2^[−j, j] and its value by 2^[−j/2, j/2] (one draw each per image)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)   # hue in [0, 256)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-j, j) * 128) % 256
    hsv[..., 1] *= 2 ** rng.uniform(-j, j)
    hsv[..., 2] *= 2 ** rng.uniform(-j / 2, j / 2)
    hsv = np.clip(hsv, 0, 255).round().astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
