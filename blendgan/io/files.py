"""Folders and file names: listing inputs, naming outputs, writing atomically.

Every file blendgan writes goes through :func:`atomic_path`: it is written to a hidden
temporary file in the destination folder, then renamed into place, so an interrupted run
never leaves a half-written file under the final name.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .. import defaults
from ..errors import ImageError

log = logging.getLogger("blendgan")

IMAGE_EXTENSIONS = defaults.IMAGE_SUFFIXES
#: Longest output file name in bytes (the limit of common filesystems).
MAX_NAME_BYTES = 255


# -- what a path is -------------------------------------------------------------------------------
def file_kind(path: str | os.PathLike) -> str | None:
    """None when ``path`` is a regular file (after following symbolic links); otherwise what it
    is, for a message: ``'missing'``, ``'a folder'``, ``'a named pipe (FIFO)'``, ``'a socket'``,
    ``'a device file'``, ``'a symbolic link loop'``, ``'a broken symbolic link'`` ...

    Reading anything but a regular file can block forever (a FIFO) or never end (a device).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"unreachable ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def not_regular(path: str | os.PathLike) -> str | None:
    """None for a regular file, else a one-line reason naming ``path``."""
    kind = file_kind(path)
    if kind is None:
        return None
    return f"{path}: no such file" if kind == "missing" else f"{path}: is {kind}, not a regular file"


def is_done(path: str | os.PathLike) -> bool:
    """Whether an output is finished: only a regular file counts (a folder or anything else
    at an output path is not an output; writing there is then reported as a failure)."""
    return file_kind(path) is None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same existing file (False when either cannot be reached)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


# -- inputs -------------------------------------------------------------------------------------
def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of ``folder`` sorted by name (or ``[folder]`` if it is an image file): the one
    folder walker of every job.

    Hidden files and sub-folders are ignored; other files are skipped with a warning naming
    them, and so are image names that are not regular files (a FIFO, a broken symbolic link,
    a symbolic link loop ...).
    """
    folder = Path(folder)
    kind = file_kind(folder)
    if kind is None:
        if not is_image_path(folder):
            raise ImageError(f"{folder}: not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})")
        return [folder]
    if kind != "a folder":
        raise ImageError(f"{folder}: no such file or directory" if kind == "missing" else f"{folder}: is {kind}")
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise ImageError(f"{folder}: cannot list this folder ({exc.strerror or exc})") from None
    images = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        kind = file_kind(entry)
        if kind == "a folder":
            continue
        if not is_image_path(entry):
            log.warning("%s: skipped, not an image file", entry)
        elif kind is not None:
            log.warning("%s: skipped, is %s", entry, kind)
        else:
            images.append(entry)
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


# -- atomic writes ------------------------------------------------------------------------------
#: Temporary files are ``.blendgan-XXXXXXXX.part<suffix>`` beside their destination.
TEMP_PREFIX = ".blendgan-"
TEMP_MARK = ".part"
#: A temporary older than this whose writer cannot be told alive (no file locks here) is stale.
STALE_AFTER = 24 * 3600.0

_held: dict[str, int] = {}  # temporary path -> descriptor holding its lock while it is written


def _fcntl():
    """The ``fcntl`` module, or None where files cannot be locked (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def temp_beside(path: Path) -> Path:
    """Create an empty hidden temporary file in ``path``'s folder (same filesystem).

    The file stays locked until :func:`release_temp` (which :func:`atomic_path` calls), so
    that :func:`sweep_temporaries` can tell it from the leftovers of a killed run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # a fixed-length name: any name that fits the folder has a temporary that fits
        tmp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(4)}{TEMP_MARK}{path.suffix[:16]}"
        try:  # mode 0o666 minus the umask, like any new file (mkstemp would make it 0o600)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        fcntl = _fcntl()
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        _held[str(tmp)] = fd
        return tmp


def release_temp(tmp: Path) -> None:
    """Unlock a temporary made by :func:`temp_beside` (after it was renamed or removed)."""
    fd = _held.pop(str(tmp), None)
    if fd is not None:
        os.close(fd)


def _stale(tmp: Path) -> bool:
    """Whether no live process writes ``tmp``: nobody holds its lock (where files can be
    locked), else it is older than :data:`STALE_AFTER`."""
    try:
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        fcntl = _fcntl()
        if fcntl is None:
            return time.time() - os.fstat(fd).st_mtime > STALE_AFTER
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it
        return True
    finally:
        os.close(fd)


def sweep_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries a killed run left in ``folder`` (see :func:`_stale`); returns them."""
    try:
        found = list(Path(folder).glob(f"{TEMP_PREFIX}*{TEMP_MARK}*"))
    except OSError:
        return []
    removed = []
    for tmp in found:
        if str(tmp) not in _held and file_kind(tmp) is None and _stale(tmp):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.info("%s: removed %d unfinished file(s) of an interrupted run", folder, len(removed))
    return removed


def prepare_outdir(path: str | os.PathLike) -> Path:
    """Create output folder ``path`` if needed and check that files can be made in it;
    raises ``OSError`` with one line naming the folder (before any work is done).  Unfinished
    files an interrupted run left there are removed (:func:`sweep_temporaries`)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OSError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temp_beside(path / "probe")
        probe.unlink()
        release_temp(probe)
    except OSError as exc:
        raise OSError(exc.errno, f"{path}: cannot write in this folder ({exc.strerror or exc})") from None
    sweep_temporaries(path)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    An interrupted or failed write leaves no partial file under the final name (and a killed
    one leaves a temporary that the next run's :func:`sweep_temporaries` removes).
    """
    path = Path(path)
    tmp = temp_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        release_temp(tmp)
