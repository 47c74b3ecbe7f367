"""What every command shares: the :class:`Command` shape, logging, signals, error reporting."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from contextlib import contextmanager
from typing import Callable

from ..errors import BlendGANError, printable
from ..jobs import JobReport

log = logging.getLogger("blendgan")


class Command:
    """One ``blendgan`` subcommand: it registers its own parser and runs on what was parsed.

    Subclasses set :attr:`name` and :attr:`help` (and optionally :attr:`description`), add
    their flags in :meth:`add_arguments` and do the work in :meth:`run`, which returns the
    exit status.  Only this layer parses arguments: :meth:`run` turns them into typed
    arguments of library calls.
    """
    name: str = ""
    help: str = ""
    description: str | None = None

    @classmethod
    def register(cls, subparsers) -> argparse.ArgumentParser:
        """Add this command's parser to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
        p = subparsers.add_parser(cls.name, help=cls.help, description=cls.description or cls.help)
        cls.add_arguments(p)
        p.set_defaults(command=cls())
        return p

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        """Add this command's flags to ``p``."""

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def __call__(self, args: argparse.Namespace) -> int:
        return self.run(args)


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes (test runners and
    notebooks replace it; a handler bound to an old, closed stream would fail)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _OneLineFormatter(logging.Formatter):
    """``LEVEL: message`` with control characters escaped: a file name cannot split the line."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname}: {printable(record.getMessage())}"


def setup_logging(quiet: bool = False) -> None:
    """blendgan's messages on stderr as ``LEVEL: message``; ``quiet`` keeps errors only."""
    handler = _StderrHandler()
    handler.setFormatter(_OneLineFormatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.ERROR if quiet else logging.INFO)
    log.propagate = False


@contextmanager
def quiet_output(quiet: bool):
    """Within, with ``quiet``: nothing but our own errors reaches stderr.  Python warnings
    (torch's ``UserWarning``\\s ...) are ignored, and what C libraries write to the stderr file
    descriptor themselves (libpng, libjpeg, OpenCV, FFmpeg warnings) goes to the null device,
    while Python's ``sys.stderr`` keeps writing where it wrote.  The command owns the process."""
    if not quiet:
        yield
        return
    try:
        stderr_is_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, ValueError, OSError):  # a test runner's or a notebook's stream
        stderr_is_fd2 = False
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    previous = sys.stderr
    if stderr_is_fd2:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=previous.encoding, errors="backslashreplace")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if stderr_is_fd2:
            sys.stderr.close()
            sys.stderr = previous
        os.dup2(saved, 2)
        os.close(saved)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a job stops as on Ctrl-C (temporary files removed)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt():
    """Within: SIGTERM (a scheduler, ``kill``, torchrun stopping its workers) stops the
    command as Ctrl-C does.  The previous handler is restored on leaving."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def error_line(exc: BaseException) -> str:
    """``blendgan: error: ...``: the one line printed for a user-facing error (control
    characters of file names escaped, so it stays one line)."""
    # our OSErrors carry the path in their message: drop the "[Errno N]" prefix
    own = isinstance(exc, OSError) and exc.filename is None and exc.strerror
    return f"blendgan: error: {printable(exc.strerror if own else str(exc))}"


def run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command on parsed ``args``: its exit status, or 2 with one line on stderr for a
    user-facing error (:class:`blendgan.errors.BlendGANError`, or an ``OSError``: a path that
    cannot be read or written).  Anything else is a bug and keeps its traceback."""
    try:
        return command(args)
    except (BlendGANError, OSError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"blendgan: {how} (finished outputs are kept; rerun to resume)", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def finish(report: JobReport, outdir) -> int:
    """Print the job summary; exit status 1 when some inputs failed, else 0."""
    log.info("%s -> %s", report.summary(), outdir)
    for path, reason in report.failed:
        print(f"failed: {printable(reason if path in reason else f'{path}: {reason}')}", file=sys.stderr)
    return 1 if report.failed else 0
