"""The page's state on plain values, without Gradio: what the unit tests drive.

Faces and styles are referred to by small dicts (``ref``) that live in the page's state:
``{"kind": "image", "key": "sha256:…", "path": ..., "name": ...}`` or
``{"kind": "seed", "seed": int, "name": ...}``.  Their codes live in a
:class:`blendgan.Session` (so moving a slider re-runs only the generator); a face or style
whose code was evicted is read again from its path.  The studio adds what only a page needs:
upload checks, previews, result files in a work folder.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch

from .. import defaults, io
from ..cache import LRU
from ..errors import ImageError, NoFaceError
from ..inversion import METHODS as REFINE_METHODS
from ..session import Face, Session, content_key
from ..synthesis import transition_alphas
from .uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_SIDE, WebError, decode_upload, display_name, read_upload

CACHE_SIZE = 32                       # face codes and style codes kept (each)
KEEP_FILES = 64                       # PNG / MP4 files kept in the demo's temporary folder
VIDEO_MAX_FRAMES = defaults.WEB_VIDEO_MAX_FRAMES
VIDEO_STEPS = defaults.WEB_VIDEO_STEPS
VIDEO_HOLD = defaults.WEB_VIDEO_HOLD
VIDEO_FPS = defaults.WEB_VIDEO_FPS
PREVIEW_SIDE = 512                    # style previews are shown at most this large
MAX_STRENGTH = defaults.WEB_MAX_STRENGTH
REFINE_MAX_STEPS = defaults.WEB_REFINE_MAX_STEPS
FACES_KEPT = 8                        # prepared face images kept for refinement (re-read from the upload after)


def describe(ref: dict | None) -> str:
    """A short name for a face or style reference."""
    return ref["name"] if isinstance(ref, dict) else "none"


class Studio:
    """Everything the page does, on plain values: images are RGB uint8 arrays or file paths.

    ``aligner``: ``"auto"`` (:mod:`blendgan.align` when it and dlib are installed), None (never
    align), or an object with ``align(rgb, size) -> list of crops`` and optionally
    ``needs_alignment(rgb) -> bool`` (default: anything but a 256/512/1024 square needs it).
    ``workdir``: where result PNGs and videos are written (default: a new temporary folder,
    removed by :meth:`close`).
    """

    def __init__(self, model, *, aligner: Any = "auto", cache_size: int = CACHE_SIZE,
                 workdir: str | os.PathLike | None = None, max_bytes: int = MAX_UPLOAD_BYTES,
                 max_side: int = MAX_UPLOAD_SIDE):
        self.model = model
        self.session = Session(model, align="auto", aligner=None if aligner == "auto" else (aligner or False),
                               align_optional=True, capacity=cache_size)
        self.lock = self.session.lock
        self.max_bytes, self.max_side = max_bytes, max_side
        self.previews = LRU(2 * cache_size)   # (kind, key) -> RGB uint8 preview
        self.prepared = LRU(FACES_KEPT)       # face key -> its Face (the prepared image, for refinement)
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="blendgan-web-") if workdir is None else workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._files_guard = threading.Lock()
        # what holds the model now and how many jobs wait for it (the page's "waiting" line)
        self._turns_guard = threading.Lock()
        self._activity: str | None = None
        self._waiting = 0

    # -- housekeeping ------------------------------------------------------------------------
    @property
    def stats(self):
        """Encoder, generator and alignment calls so far (the session's counters)."""
        return self.session.stats

    @property
    def align_off(self) -> str | None:
        """Why faces are not aligned (the alignment extra is missing ...), once known; else None."""
        return self.session.prepare.off

    def aligner(self):
        """The face aligner in use; None when alignment is unavailable (:attr:`align_off` says why)."""
        return self.session.prepare.aligner

    def close(self) -> None:
        """Remove the temporary folder (when the studio created it)."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def new_file(self, stem: str, suffix: str) -> Path:
        """A fresh result path; the oldest results beyond :data:`KEEP_FILES` are removed.
        Several sessions call this at once: files being written (hidden temporaries) are
        left alone, and files another call removed meanwhile are skipped."""
        with self._files_guard:
            files = []
            for p in self.workdir.iterdir():
                if p.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    files.append((p.stat().st_mtime, p))
            files.sort()
            for _, old in files[:max(0, len(files) - KEEP_FILES + 1)]:
                old.unlink(missing_ok=True)
            return self.workdir / f"{stem}_{secrets.token_hex(3)}{suffix}"

    @property
    def activity(self) -> str | None:
        """What is using the model now ("a video, frame 3/14" ...), or None when it is free."""
        return self._activity

    @property
    def waiting(self) -> int:
        """How many jobs wait for the model now (not counting the one running)."""
        return self._waiting

    @contextlib.contextmanager
    def turn(self, what: str):
        """Hold the model for one job described by ``what`` (shown to those waiting meanwhile)."""
        with self._turns_guard:
            self._waiting += 1
        try:
            self.lock.acquire()
        finally:
            with self._turns_guard:
                self._waiting -= 1
        try:
            self._activity = what
            yield
        finally:
            self._activity = None
            self.lock.release()

    def _report(self, what: str) -> None:
        """Update the description of the job holding the model (its progress)."""
        self._activity = what

    @property
    def can_encode_faces(self) -> bool:
        return self.model.psp is not None

    @property
    def can_embed_styles(self) -> bool:
        return self.model.has_style_encoder

    # -- faces and styles --------------------------------------------------------------------
    def _load(self, kind: str, path: str | os.PathLike, name: str | None) -> tuple[dict, np.ndarray, list[str]]:
        """Check, decode and encode a face (pSp, after alignment) or a style (VGG19) image, cached
        by content: ``(ref, preview, notes)``; :class:`WebError` for bad input."""
        name = name or Path(path).name
        if kind == "face" and not self.can_encode_faces:
            raise WebError("uploading faces needs the pSp encoder (start with --psp-encoder); use Random face")
        if kind == "style" and not self.can_embed_styles:
            raise WebError("this checkpoint has no style encoder; use Random style")
        data = read_upload(path, self.max_bytes)
        key = content_key(data)
        ref = {"kind": "image", "key": key, "path": str(path), "name": display_name(name)}
        preview = self.previews.get((kind, key))
        if preview is not None and self._cached(kind, key) is not None:
            return ref, preview, []
        rgb = decode_upload(data, name, self.max_side)
        try:
            if kind == "face":
                face = self.session.face(rgb, name, key=key)
                self.prepared.put(key, face)
                preview, notes = io.resize(face.image, self.model.size), list(face.notes)
            else:
                self.session.style(rgb, name, key=key)
                preview, notes = io.fit_within(rgb, PREVIEW_SIDE), []
        except NoFaceError as exc:
            raise WebError(f"{exc}; upload a photo in which a face is clearly visible") from None
        except ImageError as exc:
            raise WebError(str(exc)) from None
        self.previews.put((kind, key), preview)
        return ref, preview, notes

    def _cached(self, kind: str, key: str) -> torch.Tensor | None:
        return self.session.cached_face(key) if kind == "face" else self.session.cached_style(key)

    def code(self, kind: str, ref: dict) -> torch.Tensor:
        """The code of a face (W+ [1, n_latent, 512]) or style (z_embed [1, 512]) reference,
        encoded again if it was evicted from the cache."""
        if not isinstance(ref, dict):
            raise WebError(f"choose a {kind} first: upload one, pick one or press Random {kind}")
        if ref["kind"] == "seed":
            if kind == "style":
                return self.session.random_style(ref["seed"]).z_embed
            code = self.session.cached_face(f"seed:{ref['seed']}")
            return self.session.random_face(ref["seed"]).w_plus if code is None else code
        code = self._cached(kind, ref["key"])
        if code is None:  # evicted from the cache: read it again
            self._load(kind, ref["path"], ref["name"])
            code = self._cached(kind, ref["key"])
            if code is None:
                raise WebError(f"{ref['name']}: the {kind} image is no longer available, please choose it again")
        return code

    def load_face(self, path: str | os.PathLike, name: str | None = None) -> tuple[dict, np.ndarray, list[str]]:
        """A face image: ``(ref, preview RGB [size, size, 3], notes)`` (aligned when it needs it)."""
        return self._load("face", path, name)

    def load_style(self, path: str | os.PathLike, name: str | None = None) -> tuple[dict, np.ndarray]:
        """A style image: ``(ref, preview)``."""
        return self._load("style", path, name)[:2]

    def random_face(self, seed: int | None = None) -> tuple[dict, np.ndarray]:
        """A random face: z ~ N(0, I) from ``torch.Generator().manual_seed(seed)``, the
        checkpoint's truncation.  Returns ``(ref, preview of the natural face)``."""
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        ref = {"kind": "seed", "seed": seed, "name": f"random face {seed}"}
        return ref, self.session.random_face(seed).image

    def random_style(self, seed: int | None = None) -> dict:
        """A random style code z_embed ~ N(0, I) from ``torch.Generator().manual_seed(seed)``
        (the latent-guided mode of the official ``generate_image_pairs.py``)."""
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        return {"kind": "seed", "seed": seed, "name": f"random style {seed}"}

    def style_swatch(self, ref: dict, side: int = 256) -> np.ndarray:
        """A picture standing for a random style code (it has none): RGB uint8 [side, side, 3],
        colours drawn from the seed, with "random style" and the seed written on it."""
        g = np.random.default_rng(int(ref.get("seed", 0)))
        corners = g.integers(40, 230, size=(2, 2, 3)).astype(np.float32)
        swatch = cv2.resize(corners, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
        for text, y in (("random style", side // 2 - 8), (f"seed {ref.get('seed', '?')}", side // 2 + 24)):
            (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.8, 2)
            for colour, thick in (((0, 0, 0), 4), ((255, 255, 255), 2)):
                cv2.putText(swatch, text, ((side - w) // 2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, thick,
                            cv2.LINE_AA)
        return swatch

    def face_code(self, ref: dict) -> torch.Tensor:
        return self.code("face", ref)

    def style_code(self, ref: dict) -> torch.Tensor:
        return self.code("style", ref)

    # -- refinement (inversion) ---------------------------------------------------------------
    @staticmethod
    def refine_settings(method, steps) -> tuple[str, int]:
        """Checked ``(method, steps)`` of the "make the face more faithful" control: a method of
        :data:`blendgan.inversion.METHODS` and 1..:data:`REFINE_MAX_STEPS` steps."""
        if method not in REFINE_METHODS:
            raise WebError(f"choose how faithful the face should be ({', '.join(REFINE_METHODS)}), got {method!r}")
        try:
            n = float(defaults.INVERT_STEPS if steps is None else steps)
        except (TypeError, ValueError):
            raise WebError(f"refinement steps must be a whole number in 1..{REFINE_MAX_STEPS}") from None
        if not (n == int(n) and 1 <= n <= REFINE_MAX_STEPS):
            raise WebError(f"refinement steps must be a whole number in 1..{REFINE_MAX_STEPS}, got {n:g}")
        return method, int(n)

    @staticmethod
    def refine_total(method: str, steps: int) -> int:
        """Steps a refinement takes in all: ``steps`` on the codes, as many again on the weights for pti."""
        return {"psp": 0, "pti": 2 * steps}.get(method, steps)

    def prepared_face(self, ref: dict) -> Face:
        """The :class:`blendgan.Face` (pSp codes and the prepared image) of an uploaded or
        example face reference, read again from its file when no longer kept."""
        if not isinstance(ref, dict):
            raise WebError("choose a face first: upload one, pick one or press Random face")
        face = self.prepared.get(ref["key"])
        if face is None:
            data = read_upload(ref["path"], self.max_bytes)
            if content_key(data) != ref["key"]:
                raise WebError(f"{ref['name']}: the face image is no longer available, please choose it again")
            try:
                face = self.session.face(decode_upload(data, ref["name"], self.max_side), ref["name"], key=ref["key"])
            except (NoFaceError, ImageError) as exc:
                raise WebError(str(exc)) from None
            self.prepared.put(ref["key"], face)
        return face

    def refine(self, face_ref: dict, method: str = "optimize", steps: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> Face:
        """The face of ``face_ref`` made more faithful to its photo: :meth:`blendgan.Session.refine`
        with ``method`` ('optimize' or 'pti'; 'psp' returns the encoder's codes) and ``steps``,
        computed once per face and setting (then instant).  ``progress(done, total)`` is called
        when the model is ours (``done`` 0) and after each step (``total``: :meth:`refine_total`).
        A random face has no photo to refine: :class:`WebError`."""
        method, steps = self.refine_settings(method, steps)
        if isinstance(face_ref, dict) and face_ref.get("kind") == "seed":
            raise WebError("a random face is the model's own: there is no photo to refine it toward")
        if not self.can_encode_faces:
            raise WebError("refining faces needs the pSp encoder (start with --psp-encoder)")
        face = self.prepared_face(face_ref)
        if method == "psp":
            return face
        total, name = self.refine_total(method, steps), describe(face_ref)

        def report(stage: str, step: int, _steps: int, _loss: float) -> None:
            done = step + (steps if stage == "tune" else 0)
            self._report(f"the refinement of {name} (step {done} of {total})")
            if progress is not None:
                progress(done, total)
        with self.turn(f"the refinement of {name} (step 0 of {total})"):
            if progress is not None:
                progress(0, total)
            return self.session.refine(face, method, steps, progress=report)

    # -- generation --------------------------------------------------------------------------
    def _index(self, add_weight_index) -> int:
        try:
            i = int(round(float(add_weight_index)))
        except (TypeError, ValueError):
            raise WebError(f"add_weight_index must be a number in 0..{self.model.n_latent}") from None
        if not 0 <= i <= self.model.n_latent:
            raise WebError(f"add_weight_index must be in 0..{self.model.n_latent}, got {i}")
        return i

    @staticmethod
    def _strength(strength) -> float:
        try:
            s = float(strength)
        except (TypeError, ValueError):
            raise WebError(f"style strength must be a number in 0..{MAX_STRENGTH:g}") from None
        if not 0.0 <= s <= MAX_STRENGTH:
            raise WebError(f"style strength must be in 0..{MAX_STRENGTH:g}, got {s:g}")
        return s

    def _styles(self, style_ref: dict, mix_ref: dict | None, mix) -> tuple[list[torch.Tensor], list[float] | None]:
        """The style codes to blend and their weights: the style alone, or mixed with a second
        style taking the share ``mix`` in [0, 1]."""
        try:
            share = float(mix or 0.0)
        except (TypeError, ValueError):
            raise WebError("the second style's share must be a number in 0..1") from None
        if not 0.0 <= share <= 1.0:
            raise WebError(f"the second style's share must be in 0..1, got {share:g}")
        first = self.style_code(style_ref)
        if not isinstance(mix_ref, dict) or share == 0.0:
            return [first], None
        return [first, self.style_code(mix_ref)], [1.0 - share, share]

    def blend(self, face_ref: dict, style_ref: dict, add_weight_index=defaults.TRANSFER_ADD_WEIGHT_INDEX,
              strength: float = defaults.STRENGTH, preserve_color: bool = False, mix_ref: dict | None = None,
              mix: float = 0.0) -> torch.Tensor:
        """W+ [1, n_latent, 512] of the stylized face (:meth:`blendgan.Session.blend`): the same
        controls as the commands' ``--add-weight-index``, ``--strength``, ``--preserve-color``
        and ``--style-weights`` (``mix_ref`` with the share ``mix``)."""
        i, s = self._index(add_weight_index), self._strength(strength)
        face = self.face_code(face_ref)
        styles, weights = self._styles(style_ref, mix_ref, mix)
        return self.session.blend(face, styles, i, s, preserve_color=bool(preserve_color), style_weights=weights)

    def render(self, face_ref: dict, style_ref: dict, add_weight_index=defaults.TRANSFER_ADD_WEIGHT_INDEX,
               strength: float = defaults.STRENGTH, preserve_color: bool = False, mix_ref: dict | None = None,
               mix: float = 0.0, refine: str = defaults.INVERT_METHOD, refine_steps: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """The stylized face, RGB uint8 [size, size, 3]; encoders run only on a cache miss.
        ``refine`` other than 'psp': the face refined first (:meth:`refine`, with ``progress``;
        not for a random face, which is rendered as it is) and rendered with the model
        :meth:`blendgan.Session.model_for` gives (PTI's tuned copy)."""
        i, s = self._index(add_weight_index), self._strength(strength)
        refine, refine_steps = self.refine_settings(refine, refine_steps)
        refined = None
        if refine != "psp" and isinstance(face_ref, dict) and face_ref.get("kind") != "seed":
            refined = self.refine(face_ref, refine, refine_steps, progress)
        with self.turn("another result"):
            face = self.face_code(face_ref) if refined is None else refined
            styles, weights = self._styles(style_ref, mix_ref, mix)
            return self.session.render(face, styles, i, s, preserve_color=bool(preserve_color), style_weights=weights)

    def save_png(self, image: np.ndarray, stem: str = "blendgan") -> Path:
        """Write a result as a PNG in the work folder (for download)."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:80] or "blendgan"
        return io.write_image(self.new_file(safe, ".png"), image, "png")

    def render_video(self, face_ref: dict, style_refs: Sequence[dict],
                     add_weight_index=defaults.VIDEO_ADD_WEIGHT_INDEX, steps: int = VIDEO_STEPS,
                     hold: int = VIDEO_HOLD, fps: float = VIDEO_FPS,
                     progress: Callable[[int, int], None] | None = None, strength: float = defaults.STRENGTH,
                     preserve_color: bool = False) -> Path:
        """An .mp4 of the face while its style moves through ``style_refs`` (2 or more), with
        :meth:`blendgan.Session.tour` and the sigmoid transition of the official video script
        (``steps`` frames per change, ``hold`` frames on each style)."""
        if len(style_refs) < 2:
            raise WebError("choose at least two styles for a video")
        i, s = self._index(add_weight_index), self._strength(strength)
        steps, hold = int(steps), int(hold)
        alphas = transition_alphas(steps, hold)
        total = (len(style_refs) - 1) * len(alphas) + hold
        if total > VIDEO_MAX_FRAMES:
            raise WebError(f"that would be {total} frames (limit {VIDEO_MAX_FRAMES}); "
                           "use fewer styles or fewer transition frames")
        path = self.new_file("blendgan_video", ".mp4")
        with self.turn(f"a video (frame 0/{total})"):
            face = self.face_code(face_ref)
            codes = [self.style_code(r) for r in style_refs]
            done, last = 0, None
            with io.VideoWriter(path, fps=float(fps)) as writer:
                for _, _, frames in self.session.tour(face, codes, alphas, add_weight_index=i, strength=s,
                                                      preserve_color=bool(preserve_color)):
                    writer.write(frames)
                    last = frames[-1]
                    done += len(frames)
                    self._report(f"a video (frame {done}/{total})")
                    if progress is not None:
                        progress(done, total)
                if hold:
                    writer.write(np.repeat(last[None], hold, axis=0))
        return path

