"""Preparing an input face for the encoders: FFHQ-align it when it needs it.

One policy for every front end: the folder jobs (``--align never|auto|always``), the
session and the web page.  ``auto`` aligns images that are not square crops of a model
size (256, 512 or 1024 px); ``always`` aligns every image; the largest face is kept.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import defaults
from ..errors import DependencyError, ImageError, NoFaceError, UsageError, one_line
from .geometry import needs_alignment

log = logging.getLogger("blendgan")

ALIGN_MODES = defaults.ALIGN_MODES


@dataclass
class PreparedFace:
    """A face ready for the encoders: RGB uint8 [H, W, 3] and notes for the user (e.g. how many
    faces were found)."""
    image: np.ndarray
    notes: list[str] = field(default_factory=list)


class FacePreparer:
    """FFHQ alignment of input faces by ``mode`` (``never``, ``auto``, ``always``) to ``size`` px.

    ``aligner``: None for dlib's :class:`blendgan.align.FaceAligner` (loaded when this is
    made, unless ``mode`` is ``never``), False for none (faces that need alignment are used
    as they are, with a note), or any object with ``align(rgb, size) -> crops`` (largest
    face first) and optionally ``needs_alignment(rgb) -> bool``.  ``optional``: when
    the aligner cannot be loaded (the ``align`` extra is missing) or breaks, faces are used
    as they are with a note (:attr:`off` says why) instead of an error.  :attr:`kind` names
    the preprocessing, for caches of encodings.
    """

    def __init__(self, mode: str = "never", size: int = defaults.ALIGN_SIZE, *, aligner: Any = None,
                 optional: bool = False):
        if mode not in ALIGN_MODES:
            raise UsageError(f"align must be one of {ALIGN_MODES}, got {mode!r}")
        self.mode, self.size, self.optional = mode, size, optional
        #: why faces are not aligned although they should be (the extra is missing ...); None otherwise
        self.off: str | None = None
        #: alignments run so far
        self.count = 0
        self._aligner = None
        if mode != "never":
            if aligner is False:
                self.off = "face alignment is off"
            else:
                self._aligner = aligner if aligner is not None else self._load_dlib()

    def _load_dlib(self):
        from .detect import FaceAligner
        try:
            return FaceAligner().load()
        except DependencyError as exc:
            if not self.optional:
                raise
            self.off = one_line(exc)
        except Exception as exc:  # a broken optional extra must not break the caller
            if not self.optional:
                raise
            self.off = f"face alignment failed to load ({one_line(exc)})"
        log.info("%s; faces are used as they are", self.off)
        return None

    @property
    def aligner(self):
        """The aligner in use; None when faces are not aligned."""
        return self._aligner

    @property
    def kind(self) -> str:
        return "face" if self.mode == "never" else f"face-align-{self.mode}{self.size}"

    def needs_alignment(self, rgb: np.ndarray) -> bool:
        """Whether ``rgb`` [H, W, 3] is aligned under this mode."""
        if self.mode == "never":
            return False
        if self.mode == "always":
            return True
        rule = getattr(self._aligner, "needs_alignment", None) or needs_alignment
        return bool(rule(rgb))

    def prepare(self, rgb: np.ndarray, name: str) -> PreparedFace:
        """The face of ``rgb`` [H, W, 3] (named ``name`` in messages) as the encoders should see it.

        Raises :class:`blendgan.errors.NoFaceError` when alignment finds no face.
        """
        if not self.needs_alignment(rgb):
            return PreparedFace(rgb)
        if self._aligner is None:
            return PreparedFace(rgb, [f"{name} is not an aligned face crop and {self.off}; it is used as it is"])
        try:
            self.count += 1
            crops = list(self._aligner.align(rgb, self.size))
        except DependencyError as exc:
            if not self.optional:
                raise
            self._aligner, self.off = None, one_line(exc)
            return PreparedFace(rgb, [f"{name} is not an aligned face crop and {self.off}; it is used as it is"])
        except Exception as exc:
            if not self.optional:
                raise
            raise ImageError(f"{name}: face alignment failed ({one_line(exc)})") from None
        if not crops:
            raise NoFaceError(f"{name}: no face found")
        notes = [f"{name}: {len(crops)} faces found, using the first"] if len(crops) > 1 else []
        return PreparedFace(np.ascontiguousarray(crops[0]), notes)

    def __call__(self, rgb: np.ndarray, name) -> np.ndarray:
        """:meth:`prepare`'s image."""
        return self.prepare(rgb, str(name)).image
