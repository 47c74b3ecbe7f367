"""What every command shares: the :class:`Command` shape, logging, signals, error reporting."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from contextlib import contextmanager
from typing import Callable

from ..errors import BlendGANError
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


def setup_logging(quiet: bool = False) -> None:
    """blendgan's messages on stderr as ``LEVEL: message``; ``quiet`` keeps errors only."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.ERROR if quiet else logging.INFO)
    log.propagate = False


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
    """``blendgan: error: ...``: the one line printed for a user-facing error."""
    # our OSErrors carry the path in their message: drop the "[Errno N]" prefix
    own = isinstance(exc, OSError) and exc.filename is None and exc.strerror
    return f"blendgan: error: {exc.strerror if own else exc}"


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
        print(f"failed: {reason if path in reason else f'{path}: {reason}'}", file=sys.stderr)
    return 1 if report.failed else 0
