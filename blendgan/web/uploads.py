"""What the page accepts: uploads checked before decoding, names safe to show."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import io
from ..errors import BlendGANError, ImageError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024   # per file, enforced by Gradio (max_file_size) and again here
MAX_UPLOAD_SIDE = 4096                # pixels, either side


class WebError(BlendGANError, ValueError):
    """A user-facing problem on the page (bad upload, nothing selected ...): one line, shown in the page."""


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def read_upload(path: str | os.PathLike, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of an uploaded file, or :class:`WebError` when missing, empty or too large."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        raise WebError(f"{p.name}: the upload could not be read, please upload it again") from None
    if size == 0:
        raise WebError(f"{p.name}: the file is empty")
    if size > max_bytes:
        raise WebError(f"{p.name}: {_mb(size)} is too large (limit {_mb(max_bytes)})")
    return p.read_bytes()


def decode_upload(data: bytes, name: str, max_side: int = MAX_UPLOAD_SIDE) -> np.ndarray:
    """Image bytes -> RGB uint8 [H, W, 3] as :func:`blendgan.io.read_image` decodes files.

    Only images whose size the header tells are decoded, and only up to ``max_side`` pixels
    a side (decompression bombs); anything else is a :class:`WebError`.
    """
    try:
        return io.decode_image(data, name, max_side=max_side, known_size_only=True)
    except ImageError as exc:
        raise WebError(str(exc)) from None


def display_name(filename: str) -> str:
    """A file's stem reduced to letters, digits, ``-``, ``_`` and ``.`` (it is shown as Markdown)."""
    stem = Path(filename).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "image"


def list_examples(folder: str | os.PathLike | None) -> list[Path]:
    """Image files of ``folder`` sorted by name; empty when it is None or missing."""
    if folder is None or not Path(folder).is_dir():
        return []
    return [p for p in sorted(Path(folder).iterdir()) if p.is_file() and io.is_image_path(p)
            and not p.name.startswith(".")]
