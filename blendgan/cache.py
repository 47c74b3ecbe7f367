"""Caches of face and style codes: in memory (:class:`LRU`) and on disk (:class:`EncodingCache`).

Codes are small (a style code is 2 KB, a face's W+ 28 KB at 256 px), so caching them turns
every later use of an image into a generator call alone.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Mapping

import torch
from torch import nn

from . import io
from .checkpoint import save_file, weights_fingerprint
from .inversion import SYNTHESIS_PARTS

log = logging.getLogger("blendgan")


class LRU:
    """A small thread-safe least-recently-used mapping of at most ``size`` entries."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._guard = threading.Lock()

    def get(self, key: Hashable, default=None):
        with self._guard:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return default

    def put(self, key: Hashable, value) -> None:
        with self._guard:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        with self._guard:
            return key in self._items

    def __len__(self) -> int:
        with self._guard:
            return len(self._items)


def is_style(kind: str) -> bool:
    """Whether codes of ``kind`` are style codes (else face codes)."""
    return kind.startswith("style")


def is_refined(kind: str) -> bool:
    """Whether entries of ``kind`` are refined inversions (:meth:`blendgan.Session.refine`)."""
    return kind.startswith("refine")


def inversion_parts(model) -> nn.Module:
    """A container of every network an inversion's result depends on: the pSp encoder (its
    start), the synthesis network and noise maps, and the VGG19 of the style encoder (its loss)."""
    g = model.generator
    parts = nn.ModuleDict({name: getattr(g, name) for name in (*SYNTHESIS_PARTS, "noises")})
    if model.psp is not None:
        parts["psp"] = model.psp
    if hasattr(g, "embedder"):
        parts["vgg"] = g.embedder.embedder
    return parts


class EncodingCache:
    """Face codes (W+) and style codes (z_embed) on disk, so a rerun over the same images
    skips encoding.  An entry is keyed by the image's content digest, the preprocessing
    (``kind``: ``'face'``, ``'face-align-auto256'``, ``'style'``, ``'style256'`` ...) and a
    fingerprint of every weight of the encoder behind it; entries are small ``.pt`` tensors
    written atomically."""

    def __init__(self, root: str | Path, model):
        self.root = io.prepare_outdir(root)
        self.model = model
        self._prints: dict[str, str] = {}
        #: why entries are no longer written (the disk is full ...); None while they are
        self.off: str | None = None

    def fingerprint(self, kind: str) -> str:
        """Hash of every weight and buffer of the encoder behind ``kind`` (names, shapes and
        values), so that a code computed by other weights is never reused."""
        if kind not in self._prints:
            if is_refined(kind):
                net = inversion_parts(self.model)
            else:
                net = self.model.generator.embedder if is_style(kind) else self.model.psp
            self._prints[kind] = weights_fingerprint(net, salt=f"{kind}:{self.model.dtype}")
        return self._prints[kind]

    def shape(self, kind: str) -> tuple[int, ...]:
        """Shape of one cached code: z_embed [1, 512] for styles, W+ [1, n_latent, 512] for faces."""
        dim = self.model.generator.style_dim
        return (1, dim) if is_style(kind) else (1, self.model.n_latent, dim)

    def path(self, kind: str, digest: str) -> Path:
        """The entry of the image whose sha256 hex digest is ``digest``."""
        return self.root / f"{kind}-{self.fingerprint(kind)}-{digest[:32]}.pt"

    def get(self, kind: str, digest: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The cached code of the image with ``digest`` for ``kind``, else ``compute()`` stored
        for next time.  An entry that is damaged, of the wrong shape, not finite or not a
        regular file is recomputed and replaced; when entries cannot be written (a full or
        read-only disk) the cache warns once and the job goes on without it."""
        path = self.path(kind, digest)
        cached = self._load(kind, path) if path.exists() or path.is_symlink() else None
        if cached is not None:
            return cached
        value = compute()
        if self.off is None:
            try:
                save_file(value.detach().cpu().clone(), path)
            except OSError as exc:
                self.off = str(exc)
                log.warning("%s; the encoding cache is off for the rest of this job", exc)
        return value

    def get_record(self, kind: str, digest: str, compute: Callable[[], dict[str, torch.Tensor]],
                   shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
        """Like :meth:`get` for a record of named tensors (a refined inversion: its W+, losses and,
        for PTI, tuned weights): an entry without exactly the names of ``shapes``, each of
        that shape and finite, is recomputed and replaced."""
        path = self.path(kind, digest)
        cached = self._load_record(path, shapes) if path.exists() or path.is_symlink() else None
        if cached is not None:
            return cached
        value = compute()
        if self.off is None:
            try:
                save_file({k: v.detach().cpu().clone() for k, v in value.items()}, path)
            except OSError as exc:
                self.off = str(exc)
                log.warning("%s; the encoding cache is off for the rest of this job", exc)
        return value

    def _load_record(self, path: Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor] | None:
        """A usable record at ``path``, or None (with a warning saying why it is recomputed)."""
        value = self._read(path)
        if value is None:
            return None
        if not isinstance(value, dict) or set(value) != set(shapes) or any(
                not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(shapes[k]) for k, v in value.items()):
            log.warning("%s: cache entry is not the expected record, recomputing", path)
            return None
        if any(not v.is_floating_point() or not bool(torch.isfinite(v).all()) for v in value.values()):
            log.warning("%s: cache entry holds values that are not finite numbers, recomputing", path)
            return None
        return value

    def _read(self, path: Path):
        """What the file at ``path`` holds (tensors only: ``weights_only``), or None with a
        warning when it is not a regular file or cannot be read."""
        reason = io.not_regular(path)
        if reason:
            log.warning("%s; recomputing", reason)
            return None
        try:
            return torch.load(path, map_location=self.model.device, weights_only=True)
        except Exception:  # a damaged entry is recomputed
            log.warning("%s: damaged cache entry, recomputing", path)
            return None

    def _load(self, kind: str, path: Path) -> torch.Tensor | None:
        """A usable entry at ``path``, or None (with a warning saying why it is recomputed)."""
        value = self._read(path)
        if value is None:
            return None
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != self.shape(kind):
            log.warning("%s: cache entry is not a %s tensor, recomputing", path, list(self.shape(kind)))
            return None
        if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            log.warning("%s: cache entry holds values that are not finite numbers, recomputing", path)
            return None
        return value.to(self.model.dtype)
