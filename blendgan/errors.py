"""The errors a user can cause, all derived from :class:`BlendGANError`.

A :class:`BlendGANError` means bad input or a missing piece the user can supply (a file, an
optional extra, a flag value): its message is one line that names the file or flag and the
problem, and the command line prints just that line (exit status 2).  Any other exception
is a bug in blendgan and is shown with its traceback.

Each class also derives from the built-in exception that fits it (``ValueError`` for bad
values, ``ImportError`` for a missing extra ...), so code that caught those still does.
"""
from __future__ import annotations

import unicodedata


class BlendGANError(Exception):
    """A user-facing failure; ``str(exc)`` is one line naming what is wrong."""


class UsageError(BlendGANError, ValueError):
    """An argument value that cannot be used (a flag, a keyword of a library call)."""


class CheckpointError(BlendGANError, ValueError):
    """A checkpoint that cannot be used (missing, damaged, of the wrong kind)."""


class ImageError(BlendGANError, ValueError):
    """An input image that cannot be used."""


class NoFaceError(ImageError):
    """No face was found in an image."""


class VideoError(BlendGANError, ValueError):
    """A video that cannot be used."""


class DependencyError(BlendGANError, ImportError):
    """An optional extra is not installed; the message says how to install it."""


class AlignmentUnavailable(DependencyError):
    """dlib or its model files are missing."""


class DownloadError(BlendGANError, RuntimeError):
    """The weights could not be fetched or failed validation."""


class TrainError(BlendGANError, ValueError):
    """A training run that cannot start or go on (bad setting, dataset or checkpoint)."""


def one_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message, or its class name when it has none
    (library messages from OpenCV, PyAV or torch can run to many lines)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


#: characters that could fake a line or reorder what a terminal shows: bidirectional controls
_BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ``\\u2028`` ...), so a file
    name can neither split a one-line message nor forge another line or a terminal escape."""
    def escape(c: str) -> str:
        if c in _ESCAPES:
            return _ESCAPES[c]
        if unicodedata.category(c) in ("Cc", "Zl", "Zp") or ord(c) in _BIDI:
            return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
        return c
    return "".join(escape(c) for c in str(text))
