"""The plumbing of every folder job: what it reports, how outputs are written beside the
compute, and how batches are handed from the device to the host.

A job reports bad inputs and goes on (:func:`fail`), writes each output atomically on
worker threads (:class:`BackgroundWriter`), stops only when no later output could be
written either (:func:`write_failed`), and overlaps GPU compute with host writes
(:func:`overlapped`).
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import torch

from .. import io
from ..errors import UsageError

log = logging.getLogger("blendgan")
T = TypeVar("T")


@dataclass
class JobReport:
    """What a job did: outputs written, outputs that already existed, inputs that failed."""
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)

    def summary(self) -> str:
        return (f"{len(self.written)} written, {len(self.skipped)} already present (skipped), "
                f"{len(self.failed)} failed")


def fail(report: JobReport, path, exc: Exception) -> None:
    """Input ``path`` failed with ``exc`` (a one-line error): warn and record it; the job goes on."""
    reason = str(exc)
    log.warning("%s", reason if str(path) in reason else f"{path}: {reason}")
    report.failed.append((str(path), reason))


#: Write errors that no later output can escape: the job stops instead of failing each one.
FATAL_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def write_failed(report: JobReport, path: Path, exc: OSError) -> None:
    """Output ``path`` could not be written: stop the job (one line naming it) when no later
    output can be written either (:data:`FATAL_WRITE_ERRNOS`), else report it and go on."""
    reason = f"{path}: cannot write ({exc.strerror or exc})"
    if exc.errno in FATAL_WRITE_ERRNOS:
        raise OSError(exc.errno, reason) from None
    fail(report, path, OSError(reason))


#: The settings a folder's outputs were made with, written beside them (see :func:`claim_outdir`).
SETTINGS_FILE = ".blendgan-job.json"


def model_tag(model) -> str:
    """A short fingerprint of a model's weights: its first and last tensors and the learned
    blend weights (cheap: it tells checkpoints apart, it does not vouch for every weight)."""
    h = hashlib.sha256()
    tensors = list(model.state_dict().items())
    for name, t in tensors[:1] + tensors[-1:] + [(n, t) for n, t in tensors if n.endswith("add_weight")]:
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _jsonable(value):
    """``value`` as plain JSON data: paths as strings, tensors and tuples as lists."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def claim_outdir(outdir: Path, job: str, settings: dict, overwrite: bool = False) -> None:
    """Record the ``settings`` that change a ``job``'s pixels in ``outdir/`` :data:`SETTINGS_FILE`.

    Jobs skip outputs that already exist, which is only right when they were made the same
    way: if the folder holds outputs made with other settings (another strength, style or
    checkpoint), this raises a one-line :class:`UsageError` naming what differs, unless
    ``overwrite`` (the outputs are redone under the new record)."""
    record = outdir / SETTINGS_FILE
    new = {"job": job, "settings": _jsonable(settings)}
    try:
        old = json.loads(record.read_text())
    except FileNotFoundError:
        old = None
    except (OSError, ValueError):  # damaged or unreadable: nothing to compare with
        old = None
    if old == new:
        return
    has_outputs = any(p.is_file() and p.name != SETTINGS_FILE and not p.name.startswith(".")
                      for p in outdir.iterdir())
    if not isinstance(old, dict) and has_outputs and not overwrite:
        # outputs of an earlier version, or a damaged record: what they were made with is unknown
        log.warning("%s: holds outputs without a readable record of their settings; they are kept as "
                    "they are (--overwrite redoes them)", outdir)
        return
    if has_outputs and not overwrite:
        before = old.get("settings", {}) if old.get("job") == job else {}
        changed = sorted(k for k in set(before) | set(new["settings"])
                         if before.get(k) != new["settings"].get(k)) if before else ["job"]
        what = ", ".join(f"{k}: {before.get(k)!r} -> {new['settings'].get(k)!r}" if k != "job"
                         else f"job: {old.get('job')!r} -> {job!r}" for k in changed[:4])
        raise UsageError(f"{outdir}: holds outputs made with other settings ({what}); "
                         "choose another output folder, or overwrite them (--overwrite)")
    with io.atomic_path(record) as tmp:
        tmp.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")


def out_path(outdir: Path, stem: str, fmt: str) -> Path:
    """``outdir/stem.fmt``; a stem too long for a file name is cut and tagged (:func:`blendgan.io.fit_name`)."""
    if fmt not in io.FORMATS:
        raise ValueError(f"format must be one of {io.FORMATS}, got {fmt!r}")
    return outdir / io.fit_name(stem, f".{fmt}")


def writer_threads(device: torch.device) -> int:
    """Image-encoding threads for a job computing on ``device``: one beside CPU compute
    (it competes for the same cores), up to 8 beside a GPU, whose host cores are idle
    (a 1024-px PNG takes longer to encode than the GPU takes to synthesize it)."""
    if device.type == "cpu":
        return 1
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class BackgroundWriter:
    """Encode and write images on worker threads (OpenCV releases the GIL), at most
    ``depth`` pending (default 4 per thread), so compute and I/O overlap while memory
    stays bounded.

    Each finished output goes to ``report.written``; one that cannot be written goes to
    ``report.failed`` and the job goes on, unless the disk is full or read-only.  When the
    job itself raises, pending writes are dropped and that exception is the one that counts.
    """

    def __init__(self, report: JobReport, threads: int = 1, depth: int | None = None):
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="blendgan-writer")
        self._pending: deque = deque()
        self.report = report
        self.depth = depth or 4 * threads

    def submit(self, path: Path, fn, *args) -> None:
        """Run ``fn(*args)``, which writes ``path``, on a worker thread."""
        while len(self._pending) >= self.depth:
            self._collect()
        self._pending.append((path, self._pool.submit(fn, *args)))

    def _collect(self) -> None:
        path, future = self._pending.popleft()
        try:
            future.result()
        except OSError as exc:
            write_failed(self.report, path, exc)
        else:
            self.report.written.append(path)

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                while self._pending:
                    self._collect()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            for path, future in self._pending:  # after a failure of the job: keep what got written
                if future.done() and not future.cancelled() and future.exception() is None:
                    self.report.written.append(path)
            self._pending.clear()


def one_ahead(items: Iterable[T]) -> Iterator[T]:
    """Yield each item of ``items`` only once the next one has been made.

    The jobs make batches on the device and hand them to the host as
    :func:`blendgan.io.to_uint8_async` results: taking one batch ahead queues the GPU work of
    batch k+1 before the host waits for batch k, so the GPU computes while the host encodes
    and writes images."""
    pending: deque = deque(maxlen=1)
    for item in items:
        if pending:
            yield pending.popleft()
        pending.append(item)
    yield from pending


def overlapped(items: Iterable[T], device: torch.device) -> Iterable[T]:
    """:func:`one_ahead` on a GPU; on a CPU, where compute is synchronous and overlapping
    gains nothing, the items as they come (each batch is written as soon as it is made)."""
    return one_ahead(items) if device.type == "cuda" else items
