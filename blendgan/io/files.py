"""Folders and file names: listing inputs, naming outputs, writing atomically.

Every file blendgan writes goes through :func:`atomic_path`: it is written to a hidden
temporary file in the destination folder, then renamed into place, so an interrupted run
never leaves a half-written file under the final name.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .. import defaults
from ..errors import ImageError

log = logging.getLogger("blendgan")

IMAGE_EXTENSIONS = defaults.IMAGE_SUFFIXES
#: Longest output file name in bytes (the limit of common filesystems).
MAX_NAME_BYTES = 255


# -- inputs -------------------------------------------------------------------------------------
def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of ``folder`` sorted by name (or ``[folder]`` if it is an image file).

    Other files are skipped with a warning; hidden files are ignored.
    """
    folder = Path(folder)
    if folder.is_file():
        if not is_image_path(folder):
            raise ImageError(f"{folder}: not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})")
        return [folder]
    if not folder.is_dir():
        raise ImageError(f"{folder}: no such file or directory")
    images = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        if is_image_path(entry):
            images.append(entry)
        else:
            log.warning("%s: skipped, not an image file", entry)
    return images


def input_images(path: str | os.PathLike, what: str) -> list[Path]:
    """:func:`list_images` of ``path``; none at all is an :class:`ImageError` (``what``: 'face', 'style' ...)."""
    images = list_images(path)
    if not images:
        raise ImageError(f"{path}: no {what} images found")
    return images


# -- output names -------------------------------------------------------------------------------
def output_stems(paths: Sequence[Path]) -> dict[Path, str]:
    """The name each input contributes to output names: its stem, or its whole file name
    where several inputs share a stem (``a.jpg`` and ``a.png`` -> ``a.jpg``, ``a.png``)."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return {p: p.stem if counts[p.stem] == 1 else p.name for p in paths}


def fit_name(stem: str, suffix: str) -> str:
    """``stem + suffix``, with the stem cut and tagged by a hash of it when the name would be
    longer than :data:`MAX_NAME_BYTES` (``suffix`` includes its dot)."""
    name = stem + suffix
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    tag = "~" + hashlib.sha256(stem.encode()).hexdigest()[:10]
    room = MAX_NAME_BYTES - len((tag + suffix).encode())
    return stem.encode()[:room].decode("utf-8", "ignore") + tag + suffix


def prepare_outdir(path: str | os.PathLike) -> Path:
    """Create output folder ``path`` if needed and check that files can be made in it;
    raises ``OSError`` with one line naming the folder (before any work is done)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OSError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        temp_beside(path / "probe").unlink()
    except OSError as exc:
        raise OSError(exc.errno, f"{path}: cannot write in this folder ({exc.strerror or exc})") from None
    return path


# -- atomic writes ------------------------------------------------------------------------------
def temp_beside(path: Path) -> Path:
    """Create an empty hidden temporary file in ``path``'s folder (same filesystem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # a fixed-length name: any name that fits the folder has a temporary that fits
        tmp = path.parent / f".blendgan-{secrets.token_hex(4)}.part{path.suffix[:16]}"
        try:  # mode 0o666 minus the umask, like any new file (mkstemp would make it 0o600)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    An interrupted or failed write leaves no partial file under the final name.
    """
    path = Path(path)
    tmp = temp_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
