"""Fetch the official BlendGAN weights from Google Drive, and check them before use.

    from blendgan.download import download
    download("pretrained_models")                    # blendgan.pt + psp_encoder.pt
    download("pretrained_models", names=("style_encoder",))

The file ids are those of the upstream README.  Google Drive is reached through ``gdown``,
an optional dependency (``pip install "blendgan[download]"``) imported only when something
actually has to be fetched.

Every file is written to ``<dest>/<file>.part`` first (gdown resumes an interrupted transfer
on the next run when the installed version supports it), its structure is then validated
(``blendgan.pt`` with :func:`blendgan.checkpoint.load_generator`, ``psp_encoder.pt`` with
:func:`blendgan.checkpoint.load_psp`, ``style_encoder.pt`` as a dict of tensors), and only
then moved into place with :func:`os.replace`, so ``<dest>/<file>`` is either absent or a
complete, loadable file.  A download that fails validation is kept as ``<file>.invalid`` for
inspection.  Every failure is raised as :class:`DownloadError` with a one-line message that
names the file and, where useful, the URL to fetch it by hand.
"""
from __future__ import annotations

import inspect
import os
import socket
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import torch

from . import checkpoint
from .errors import CheckpointError, DownloadError

DRIVE_HOST = "drive.google.com"
DRIVE_PORT = 443
INSTALL_HINT = 'pip install "blendgan[download]"'

Fetch = Callable[[str, Path], None]


# -- validators: path -> one-line summary, raising CheckpointError -------------------------

def _validate_blendgan(path: Path) -> str:
    """``blendgan.pt``: a complete generator with its style encoder (``embedder.*``)."""
    ck = checkpoint.load_generator(path)
    c = ck.config
    if not c.style_encoder:
        raise CheckpointError(f"{path}: BlendGAN generator without a style encoder "
                                         "('embedder.*' weights); the official blendgan.pt has one")
    return (f"BlendGAN generator {c.size}px, channel multiplier {c.channel_multiplier}, "
            f"latent_avg {'yes' if ck.latent_avg is not None else 'no'}")


def _validate_psp(path: Path) -> str:
    """``psp_encoder.pt``: a complete IR-SE50 pSp encoder with its ``latent_avg``."""
    enc = checkpoint.load_psp(path)
    return f"pSp encoder, {enc.n_latent} styles ({checkpoint.n_latent_to_size(enc.n_latent)}px)"


def _count_tensors(obj, depth: int = 0) -> tuple[int, int]:
    """(number of tensors, number of values) in nested dicts/lists, three levels deep at most."""
    if isinstance(obj, torch.Tensor):
        return 1, obj.numel()
    if depth >= 3:
        return 0, 0
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    n = values = 0
    for item in items:
        a, b = _count_tensors(item, depth + 1)
        n, values = n + a, values + b
    return n, values


def _validate_style_encoder(path: Path) -> str:
    """``style_encoder.pt``: any non-empty dict holding tensors (its inner layout may vary)."""
    obj = checkpoint.load_file(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if not obj:
        raise CheckpointError(f"{path}: is an empty dict, expected style encoder weights")
    n, values = _count_tensors(obj)
    if n == 0:
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        raise CheckpointError(f"{path}: holds no tensors (top-level keys: {keys})")
    return f"style encoder weights, {n} tensors, {values / 1e6:.1f}M values"


class RemoteFile(NamedTuple):
    """One downloadable file: its name on disk, its Google Drive id, and its validator."""
    filename: str
    drive_id: str
    validate: Callable[[Path], str]


#: name -> (filename, Google Drive id, validator); ids from the upstream BlendGAN README.
FILES: dict[str, RemoteFile] = {
    "blendgan": RemoteFile("blendgan.pt", "1eF04jKMLAb9DvzI72m8Akn5ykWf3EafE", _validate_blendgan),
    "psp_encoder": RemoteFile("psp_encoder.pt", "14nevG94hNkkwaoK5eJLF1iv78cv5O8fN", _validate_psp),
    "style_encoder": RemoteFile("style_encoder.pt", "1EaM0ZYsAMdPkbRz0smLNIlJ1rxVAhbEz",
                                _validate_style_encoder),
}


def manual_url(name: str) -> str:
    """The browser URL of ``name``'s file on Google Drive."""
    return f"https://drive.google.com/uc?id={FILES[name].drive_id}"


def _manual_hint(names: Iterable[str], dest: Path) -> str:
    files = ", ".join(f"{FILES[n].filename} from {manual_url(n)}" for n in names)
    return f"or fetch manually: {files} into {dest}/"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- network --------------------------------------------------------------------------------

def probe_target() -> tuple[str, int]:
    """Where the first connection goes: Google Drive, or the HTTPS proxy when one is set."""
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(DRIVE_HOST):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    return DRIVE_HOST, DRIVE_PORT


def check_connectivity(timeout: float = 10.0) -> None:
    """Open (and close) one TCP connection to Google Drive (or the proxy), within ``timeout``.

    Raises :class:`OSError` when it cannot: no network, DNS failure, firewall, time-out.
    """
    host, port = probe_target()
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _import_gdown():
    try:
        import gdown  # noqa: PLC0415 (optional dependency, imported only when needed)
    except ImportError:
        return None
    return gdown


def _gdown_fetch(gdown, timeout: float) -> Fetch:
    """A fetch function on top of ``gdown.download`` using the options the installed version has.

    ``resume=True`` (gdown >= 4.4) continues a partial transfer left by an interrupted run;
    ``timeout`` (recent versions) bounds each network read.  Older versions lack them and
    simply start over.
    """
    try:
        params = inspect.signature(gdown.download).parameters
    except (TypeError, ValueError):
        params = {}
    options = {}
    if "resume" in params:
        options["resume"] = True
    if "timeout" in params:
        options["timeout"] = timeout

    def fetch(file_id: str, out_path: Path) -> None:
        result = gdown.download(f"https://drive.google.com/uc?id={file_id}", str(out_path),
                                quiet=False, **options)
        if result is None:  # older gdown reports refusals (quota, permissions) by returning None
            raise RuntimeError("Google Drive refused the download (daily quota exceeded or access denied?)")

    return fetch


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# -- one file -------------------------------------------------------------------------------

def _check(name: str, path: Path) -> str:
    """Validate ``path`` as ``name``'s file; one-line summary, or CheckpointError.

    Any failure while reading the file counts as invalid: on garbage bytes torch's
    unpickler can raise errors (e.g. IndexError) that ``load_file`` does not translate.
    """
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise CheckpointError(f"{path}: is an HTML page, not a checkpoint (Google Drive "
                                         "quota exceeded or access denied?)")
    try:
        return FILES[name].validate(path)
    except CheckpointError:
        raise
    except Exception as exc:  # torch's unpickler can fail in other ways on garbage input
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or "
                                         f"corrupt?): {_first_line(exc)}") from None


def _strip_path(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _fetch_one(name: str, dest: Path, fetch: Fetch, overwrite: bool) -> Path:
    filename, drive_id, _ = FILES[name]
    final = dest / filename
    part = dest / f"{filename}.part"
    invalid = dest / f"{filename}.invalid"
    url = manual_url(name)
    if overwrite and part.exists():
        part.unlink()  # a complete but unvalidated leftover: fetch afresh as asked
    _log(f"{filename}: downloading from {url}")
    try:
        fetch(drive_id, part)
    except Exception as exc:
        kept = f"; partial data kept in {part}, run again to resume" if part.exists() else ""
        raise DownloadError(f"{filename}: download failed ({_first_line(exc)}){kept}; "
                            f"or fetch it manually from {url} into {dest}/") from exc
    if not part.is_file():
        raise DownloadError(f"{filename}: the download produced no file at {part}; "
                            f"fetch it manually from {url} into {dest}/")
    try:
        summary = _check(name, part)
    except CheckpointError as exc:
        os.replace(part, invalid)
        raise DownloadError(f"{final}: downloaded file is not a valid {filename}: "
                            f"{_strip_path(str(exc), part)} (kept as {invalid})") from None
    os.replace(part, final)
    _log(f"{filename}: OK ({summary}) -> {final}")
    return final


def download(dest_dir: str | os.PathLike = "pretrained_models",
             names: Iterable[str] = ("blendgan", "psp_encoder"),
             overwrite: bool = False, timeout: float = 10.0,
             fetch: Fetch | None = None) -> list[Path]:
    """Download (and validate) the official files named in ``names`` into ``dest_dir``.

    ``names`` are keys of :data:`FILES`: ``"blendgan"``, ``"psp_encoder"``, ``"style_encoder"``.
    A file already present and valid is kept unless ``overwrite``; one present but invalid is
    downloaded again (it is replaced only once the new copy has been validated).

    With the default ``fetch`` (gdown), connectivity is probed first with a TCP connection of
    at most ``timeout`` seconds, so an offline machine fails at once rather than after the
    first file.  ``fetch(file_id, out_path)`` can be given instead (tests, mirrors): it must
    write the file to ``out_path`` and raise on failure; no probe is made for it.

    Returns the paths of the requested files, in the order of ``names``.
    Raises :class:`DownloadError` (one line) on any failure.
    """
    if isinstance(names, str):
        names = (names,)
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in FILES]
    if unknown:
        raise DownloadError(f"unknown file name(s) {', '.join(map(repr, unknown))}; "
                            f"choose from {', '.join(map(repr, FILES))}")
    if not timeout or timeout <= 0:
        raise DownloadError(f"timeout must be a positive number of seconds, got {timeout!r}")
    dest = Path(dest_dir)
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"{dest}: exists and is not a directory")

    todo = []
    for name in names:
        path = dest / FILES[name].filename
        if path.exists() and not overwrite:
            try:
                summary = _check(name, path)
            except (CheckpointError, OSError) as exc:
                _log(f"{FILES[name].filename}: present but not valid ({_strip_path(str(exc), path)}); "
                     "downloading it again")
            else:
                _log(f"{FILES[name].filename}: already present ({summary}), skipped; "
                     "fetch it again with --overwrite (overwrite=True)")
                continue
        todo.append(name)
    if not todo:
        return [dest / FILES[n].filename for n in names]

    if fetch is None:
        gdown = _import_gdown()
        if gdown is None:
            raise DownloadError(f"downloading needs the optional package gdown: {INSTALL_HINT}, "
                                f"{_manual_hint(todo, dest)}")
        try:
            check_connectivity(timeout)
        except OSError as exc:
            host, port = probe_target()
            raise DownloadError(f"cannot reach {host}:{port} within {timeout:g}s "
                                f"({_first_line(exc)}): no network? Retry when online, "
                                f"{_manual_hint(todo, dest)}") from None
        fetch = _gdown_fetch(gdown, timeout)

    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{dest}: cannot create the directory ({_first_line(exc)})") from None
    for name in todo:
        _fetch_one(name, dest, fetch, overwrite)
    return [dest / FILES[n].filename for n in names]
