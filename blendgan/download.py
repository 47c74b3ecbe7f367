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

Mirrors: ``download(..., source=DIR_OR_URL)`` (``blendgan download --from``) takes the files
from a folder or an http(s) URL holding them under their names (``URL/blendgan.pt``) instead
of Google Drive; an interrupted transfer resumes from the ``.part`` file (an HTTP range
request, or a seek in the folder's file).

Weights that fetch themselves: :func:`fetch_missing_defaults`, called by
``BlendGAN.from_pretrained`` (and so every command), downloads the default files
(``pretrained_models/blendgan.pt``, ``psp_encoder.pt``) when they are missing, from
``BLENDGAN_MIRROR`` when set, else Google Drive, unless offline (``offline=True``,
``--offline``, or ``BLENDGAN_OFFLINE=1``) or without a network, where the missing file is
reported in one line as before.
"""
from __future__ import annotations

import http.client
import inspect
import logging
import os
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import torch

from . import checkpoint, defaults
from .errors import CheckpointError, DownloadError

log = logging.getLogger("blendgan")

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


# -- mirrors: a folder or an http(s) URL ------------------------------------------------------

CHUNK = 1 << 20


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm  # noqa: PLC0415 (a dependency, imported where used)
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, file=sys.stderr, leave=False)


def is_url(source: str | os.PathLike) -> bool:
    """Whether a mirror is an http(s) URL (else a folder, or a ``file://`` URL of one)."""
    return urllib.parse.urlsplit(str(source)).scheme in ("http", "https")


def mirror_folder(source: str | os.PathLike) -> Path:
    """The folder of a folder mirror (``file://`` URLs accepted)."""
    parts = urllib.parse.urlsplit(str(source))
    return Path(urllib.request.url2pathname(parts.path)) if parts.scheme == "file" else Path(source)


def source_location(source: str | os.PathLike, filename: str) -> str:
    """Where a mirror keeps ``filename``: ``URL/filename`` or ``DIR/filename``."""
    if is_url(source):
        return f"{str(source).rstrip('/')}/{urllib.parse.quote(filename)}"
    return str(mirror_folder(source) / filename)


def _copy_resuming(src: Path, part: Path, progress: bool) -> None:
    """Copy ``src`` to ``part``, continuing after the bytes ``part`` already holds."""
    total = src.stat().st_size
    start = part.stat().st_size if part.exists() else 0
    if start > total:  # not a prefix of this file: start over
        part.unlink()
        start = 0
    with open(src, "rb") as fin, open(part, "ab") as fout, \
            _progress_bar(total, start, src.name, progress) as bar:
        fin.seek(start)
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            bar.update(len(chunk))


def _http_resuming(url: str, part: Path, timeout: float, progress: bool) -> None:
    """GET ``url`` into ``part``; with a partial ``part``, ask only for the rest (HTTP range).

    A server that ignores the range sends the whole file, which replaces the partial one.
    """
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) URLs only)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to send: the part file is complete
            return
        raise RuntimeError(f"HTTP {exc.code} {exc.reason} for {url}") from None
    with response:
        resumed = start > 0 and response.status == 206
        if resumed:
            found = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if found is None or int(found.group(1)) != start:  # not the rest of our part file
                part.unlink()
                raise RuntimeError(f"the server resumed at another offset than {start} "
                                   f"(Content-Range {response.headers.get('Content-Range')!r}); run again")
        length = response.headers.get("Content-Length")
        total = (start if resumed else 0) + int(length) if length and length.isdigit() else None
        with open(part, "ab" if resumed else "wb") as out, \
                _progress_bar(total, start if resumed else 0, Path(part.name).stem, progress) as bar:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            except http.client.IncompleteRead as exc:  # the connection dropped: keep what came
                out.write(exc.partial)
    if total is not None and part.stat().st_size < total:
        raise RuntimeError(f"connection closed after {part.stat().st_size} of {total} bytes")


def mirror_fetch(source: str | os.PathLike, timeout: float = defaults.DOWNLOAD_TIMEOUT,
                 progress: bool = True) -> Fetch:
    """A fetch function (``fetch(drive_id, out_path)``) reading the files from a mirror."""
    by_id = {f.drive_id: f.filename for f in FILES.values()}

    def fetch(file_id: str, out_path: Path) -> None:
        where = source_location(source, by_id[file_id])
        if is_url(source):
            _http_resuming(where, Path(out_path), timeout, progress)
        else:
            _copy_resuming(Path(where), Path(out_path), progress)

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


def _fetch_one(name: str, dest: Path, fetch: Fetch, overwrite: bool, source: str | os.PathLike | None) -> Path:
    filename, drive_id, _ = FILES[name]
    final = dest / filename
    part = dest / f"{filename}.part"
    invalid = dest / f"{filename}.invalid"
    url = manual_url(name) if source is None else source_location(source, filename)
    if overwrite and part.exists():
        part.unlink()  # a complete but unvalidated leftover: fetch afresh as asked
    _log(f"{filename}: downloading from {url}")
    try:
        fetch(drive_id, part)
    except Exception as exc:
        kept = f"; partial data kept in {part}, run again to resume" if part.exists() else ""
        raise DownloadError(f"{filename}: download failed ({_first_line(exc)}){kept}; "
                            f"or fetch it manually from {url} into {dest}/") from None
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


def download(dest_dir: str | os.PathLike = defaults.WEIGHTS_DIR,
             names: Iterable[str] = ("blendgan", "psp_encoder"),
             overwrite: bool = False, timeout: float = defaults.DOWNLOAD_TIMEOUT,
             fetch: Fetch | None = None, source: str | os.PathLike | None = None,
             progress: bool = True) -> list[Path]:
    """Download (and validate) the official files named in ``names`` into ``dest_dir``.

    ``names`` are keys of :data:`FILES`: ``"blendgan"``, ``"psp_encoder"``, ``"style_encoder"``.
    A file already present and valid is kept unless ``overwrite``; one present but invalid is
    downloaded again (it is replaced only once the new copy has been validated).

    With the default ``fetch`` (gdown), connectivity is probed first with a TCP connection of
    at most ``timeout`` seconds, so an offline machine fails at once rather than after the
    first file.  ``source``: a mirror (a folder, or an http(s) URL) holding the files under
    their names, read instead of Google Drive (no gdown needed, resumed after an interruption,
    a progress bar unless not ``progress``).  ``fetch(file_id, out_path)`` can be given
    instead (tests): it must write the file to ``out_path`` and raise on failure; no probe is
    made for it.

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

    if fetch is None and source is not None:
        if not is_url(source) and not mirror_folder(source).is_dir():
            raise DownloadError(f"{source}: no such folder (a mirror is a folder or an http(s) URL)")
        fetch = mirror_fetch(source, timeout, progress)
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
        _fetch_one(name, dest, fetch, overwrite, source)
    return [dest / FILES[n].filename for n in names]


# -- weights that fetch themselves ----------------------------------------------------------

#: the default paths of the commands and of ``from_pretrained``, and the files they name
DEFAULT_PATHS = {"blendgan": defaults.CKPT, "psp_encoder": defaults.PSP_ENCODER}


def offline_requested(offline: bool | None = None) -> bool:
    """``offline`` when given, else whether ``BLENDGAN_OFFLINE`` is set to a true value
    (anything but empty, 0, false, no, off)."""
    if offline is not None:
        return bool(offline)
    return os.environ.get(defaults.ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no", "off")


def _default_name(path: str | os.PathLike) -> str | None:
    """The name in :data:`FILES` when ``path`` is a default weight path, else None."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return None
    for name, default in DEFAULT_PATHS.items():
        if resolved == Path(default).resolve():
            return name
    return None


def fetch_missing_defaults(paths: Iterable[str | os.PathLike | None], offline: bool | None = None,
                           progress: bool = True, timeout: float = defaults.DOWNLOAD_TIMEOUT) -> list[Path]:
    """Download those of ``paths`` that are default weight paths (:data:`DEFAULT_PATHS`)
    and missing; other paths are left alone.  Returns the files downloaded.

    Nothing happens offline (``offline``, or ``BLENDGAN_OFFLINE=1`` when ``offline`` is None):
    loading then reports the missing file.  The files come from ``BLENDGAN_MIRROR`` when
    set, else Google Drive.  Without a network the missing file is reported in one line
    (:class:`CheckpointError`); a failed or invalid download raises :class:`DownloadError`.
    """
    wanted = {}
    for path in paths:
        if path is None:
            continue
        name = _default_name(path)
        if name is not None and not Path(path).exists():
            wanted[name] = Path(path)
    if not wanted or offline_requested(offline):
        return []
    dest = next(iter(wanted.values())).parent
    mirror = os.environ.get(defaults.ENV_MIRROR) or None
    if mirror is None:
        try:
            check_connectivity(timeout)
        except OSError:
            host, port = probe_target()
            missing = ", ".join(str(p) for p in wanted.values())
            raise CheckpointError(f"{missing}: no such file, and no network to download it (cannot reach "
                                  f"{host}:{port}); {checkpoint.GET_WEIGHTS_HINT}") from None
    log.info("%s missing: downloading %s from %s (--offline or %s=1 to stop this)",
             ", ".join(str(p) for p in wanted.values()), ", ".join(FILES[n].filename for n in wanted),
             mirror or "Google Drive", defaults.ENV_OFFLINE)
    return download(dest, names=tuple(wanted), timeout=timeout, source=mirror, progress=progress)
