"""``blendgan web``: a local Gradio demo (optional extra ``pip install "blendgan[web]"``).

Pick or upload a face and a style, move the sliders, generate, download the PNG; a second tab
renders a short video of the face moving through two or more styles.

The logic lives in :class:`Studio`, which needs no Gradio (and is what the unit tests drive);
:func:`build_app` wraps it in a ``gradio.Blocks`` page and :func:`launch` serves it.

* **Caching.** Style embeddings and face codes are cached, keyed by the SHA-256 of the image
  file (or by the seed of a random face/style), so moving a slider re-runs only the generator.
* **Style strength** ``s`` in [0, 1] scales the style part of the weighted blending module:
  with the face W+ ``w`` and the official blend ``b = w·a + w_style·(1−a)``, the result is
  ``w + s·(b − w) = w·(1 − s(1−a)) + w_style·s(1−a)``, i.e. the style's W moved toward the
  face's W, equivalently ``(1−a)`` scaled by ``s``.  ``s = 1`` is the official result
  (bit for bit), ``s = 0`` the face alone.
* **Inputs** are checked before decoding: at most 20 MB and 4096 px a side; anything else
  (not an image, no face found) is a one-line message in the page, never a stack trace.
* **Faces** are aligned (FFHQ crop) when :mod:`blendgan.align` is importable and says the image
  needs it; without it images are used as they are (they should be aligned crops already).
* **One job at a time** per model: the page's queue runs one event at a time and a per-model
  lock guards the networks.  Analytics are off (``Blocks(analytics_enabled=False)``), SSR,
  sharing and the MCP server too: nothing leaves the machine.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import io
from . import pipeline as P

log = logging.getLogger("blendgan")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_CKPT = "pretrained_models/blendgan.pt"
DEFAULT_PSP = "pretrained_models/psp_encoder.pt"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024   # per file, enforced by Gradio (max_file_size) and again here
MAX_UPLOAD_SIDE = 4096                # pixels, either side
CACHE_SIZE = 32                       # face codes and style codes kept (each)
HISTORY_SIZE = 8                      # results shown in the "last results" gallery
KEEP_FILES = 64                       # PNG / MP4 files kept in the demo's temporary folder
GRADIO_CACHE_CLEANUP = (600, 3600)    # Gradio's copies: checked every 10 min, removed after 1 h
VIDEO_MAX_FRAMES = 150
VIDEO_STEPS = 8                       # transition frames per style change (the CLI uses 20)
VIDEO_HOLD = 3
VIDEO_FPS = 12
PREVIEW_SIDE = 512                    # style previews are shown at most this large
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "test_imgs"

_MODEL_LOCKS: "weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


class WebError(ValueError):
    """A user-facing problem (bad upload, nothing selected ...): one line, shown in the page."""


class WebDependencyError(ImportError):
    """Gradio is not installed; the message says how to install it."""


def import_gradio():
    """``import gradio``, or :class:`WebDependencyError` with the install command."""
    try:
        import gradio
    except ImportError:
        raise WebDependencyError('the web demo needs Gradio: pip install "blendgan[web]"') from None
    return gradio


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """The lock shared by every demo that uses ``model`` (one job at a time per model)."""
    with _LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


def list_examples(folder: str | os.PathLike | None) -> list[Path]:
    """Image files of ``folder`` sorted by name; empty when it is None or missing."""
    if folder is None or not Path(folder).is_dir():
        return []
    return [p for p in sorted(Path(folder).iterdir()) if p.is_file() and io.is_image_path(p)
            and not p.name.startswith(".")]


# -- inputs ---------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def read_upload(path: str | os.PathLike, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of an uploaded file, or :class:`WebError` when missing, empty or too large."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        raise WebError(f"{p.name}: the upload could not be read, please upload it again") from None
    if size == 0:
        raise WebError(f"{p.name}: the file is empty")
    if size > max_bytes:
        raise WebError(f"{p.name}: {_mb(size)} is too large (limit {_mb(max_bytes)})")
    return p.read_bytes()


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header without decoding pixels; None if PIL cannot tell."""
    from io import BytesIO

    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(BytesIO(data)) as im:
                return im.size
        except Image.DecompressionBombError:
            return (Image.MAX_IMAGE_PIXELS or 2**31, Image.MAX_IMAGE_PIXELS or 2**31)
        except Exception:
            return None


def decode_upload(data: bytes, name: str, max_side: int = MAX_UPLOAD_SIDE) -> np.ndarray:
    """Image bytes -> RGB uint8 [H, W, 3] as :func:`blendgan.io.read_image` decodes files.

    The size in the header is checked before any pixel is decoded (decompression bombs).
    """
    import cv2
    dims = _header_size(data)
    if dims is None:  # only what Pillow identified is decoded: its size is known beforehand
        raise WebError(f"{name}: not an image in a supported format (PNG, JPEG, WebP, BMP, TIFF)")
    if max(dims) > max_side:
        raise WebError(f"{name}: {dims[0]}×{dims[1]} px is too large (limit {max_side} px a side)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise WebError(f"{name}: not an image, or a format that cannot be decoded")
    if max(bgr.shape[:2]) > max_side:
        raise WebError(f"{name}: {bgr.shape[1]}×{bgr.shape[0]} px is too large (limit {max_side} px a side)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def display_name(filename: str) -> str:
    """A file's stem reduced to letters, digits, ``-``, ``_`` and ``.`` (it is shown as Markdown)."""
    stem = Path(filename).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "image"


def fit_within(image: np.ndarray, side: int) -> np.ndarray:
    """Downscale RGB [H, W, 3] so that its longer side is at most ``side`` (aspect kept)."""
    import cv2
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    k = side / max(h, w)
    return cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


class _LRU(OrderedDict):
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self._guard = threading.Lock()

    def get(self, key, default=None):
        with self._guard:
            if key in self:
                self.move_to_end(key)
                return self[key]
            return default

    def put(self, key, value) -> None:
        with self._guard:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)


# -- the demo's logic (no Gradio) -----------------------------------------------------------------
class Studio:
    """Everything the page does, on plain values: images are RGB uint8 arrays or file paths.

    Faces and styles are referred to by small dicts (``ref``) that live in the page's state:
    ``{"kind": "image", "key": sha256, "path": ..., "name": ...}`` or
    ``{"kind": "seed", "seed": int, "name": ...}``.  Their codes are computed once and cached
    (LRU, ``cache_size`` each); an evicted image is read again from its path.

    ``aligner``: ``"auto"`` (:mod:`blendgan.align` when it and dlib are installed), None (never
    align), or an object with ``align(rgb, size) -> list of crops`` and optionally
    ``needs_alignment(rgb) -> bool`` (default: anything but a 256/512/1024 square needs it).  ``workdir``: where result PNGs and videos are written
    (default: a new temporary folder, removed by :meth:`close`).
    """

    def __init__(self, model, *, aligner: Any = "auto", cache_size: int = CACHE_SIZE,
                 workdir: str | os.PathLike | None = None, max_bytes: int = MAX_UPLOAD_BYTES,
                 max_side: int = MAX_UPLOAD_SIDE):
        self.model = model
        self.lock = model_lock(model)
        self.max_bytes, self.max_side = max_bytes, max_side
        self._aligner = aligner
        self._align_module = None
        #: why faces are not aligned (alignment extra missing ...), once known; None otherwise
        self.align_off: str | None = None
        self.faces = _LRU(cache_size)     # key -> (w_plus [1, n_latent, 512], preview RGB uint8)
        self.styles = _LRU(cache_size)    # key -> (z_embed [1, 512], preview RGB uint8 or None)
        self.stats = {"encode_face": 0, "embed_style": 0, "synthesize": 0, "align": 0}
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="blendgan-web-") if workdir is None else workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._files_guard = threading.Lock()

    # -- housekeeping ------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the temporary folder (when the studio created it)."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _new_file(self, stem: str, suffix: str) -> Path:
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
    def can_encode_faces(self) -> bool:
        return self.model.psp is not None

    @property
    def can_embed_styles(self) -> bool:
        return self.model.has_style_encoder

    # -- alignment ---------------------------------------------------------------------------
    def aligner(self):
        """The face aligner, resolved (and its models loaded) on first use; None when alignment
        is unavailable (:attr:`align_off` then says why)."""
        if isinstance(self._aligner, str) and self._aligner == "auto":
            self._aligner = None
            try:
                from . import align
            except ImportError as exc:
                self.align_off = _first_line(exc) or "blendgan.align is not available"
            else:
                self._align_module = align
                try:
                    aligner = align.FaceAligner()
                    self._aligner = aligner.load() if hasattr(aligner, "load") else aligner
                except ImportError as exc:  # the optional extra (dlib) is missing
                    self.align_off = _first_line(exc) or "face alignment is not installed"
                except Exception as exc:  # a broken optional extra must not break the demo
                    self.align_off = f"face alignment failed to load ({_first_line(exc) or type(exc).__name__})"
            if self.align_off:
                log.info("web demo: %s; faces are used as they are", self.align_off)
        return self._aligner

    def _needs_alignment(self, aligner, rgb: np.ndarray) -> bool:
        needs = getattr(aligner, "needs_alignment", None) or getattr(self._align_module, "needs_alignment", None)
        if needs is None:  # without a rule: anything but a square of a model size
            return not (rgb.shape[0] == rgb.shape[1] and rgb.shape[0] in (256, 512, 1024))
        return bool(needs(rgb))

    def _align(self, rgb: np.ndarray, name: str) -> tuple[np.ndarray, list[str]]:
        """(face crop, notes): the FFHQ crop of the largest face when the image needs one."""
        aligner = self.aligner()
        if not self._needs_alignment(aligner, rgb):
            return rgb, []
        if aligner is None:
            why = self.align_off or "face alignment is off"
            return rgb, [f"{name} is not an aligned face crop and {why}; it is used as it is"]
        try:
            self.stats["align"] += 1
            crops = list(aligner.align(rgb, self.model.size))
        except ImportError as exc:
            self._aligner, self.align_off = None, _first_line(exc) or "face alignment is not installed"
            return rgb, [f"{name} is not an aligned face crop and {self.align_off}; it is used as it is"]
        except Exception as exc:
            raise WebError(f"{name}: face alignment failed ({_first_line(exc) or type(exc).__name__})") from None
        if not crops:
            raise WebError(f"{name}: no face found; upload a photo in which a face is clearly visible")
        notes = [f"{name}: {len(crops)} faces found, using the first"] if len(crops) > 1 else []
        return np.ascontiguousarray(crops[0]), notes

    # -- faces -------------------------------------------------------------------------------
    def load_face(self, path: str | os.PathLike, name: str | None = None) -> tuple[dict, np.ndarray, list[str]]:
        """Check, decode, align and pSp-encode a face image (cached by content).

        Returns ``(ref, preview RGB [size, size, 3], notes)``; :class:`WebError` for bad input.
        """
        name = name or Path(path).name
        if not self.can_encode_faces:
            raise WebError("uploading faces needs the pSp encoder (start with --psp-encoder); use Random face")
        data = read_upload(path, self.max_bytes)
        key = hashlib.sha256(data).hexdigest()
        ref = {"kind": "image", "key": key, "path": str(path), "name": display_name(name)}
        cached = self.faces.get(key)
        if cached is not None:
            return ref, cached[1], []
        rgb = decode_upload(data, name, self.max_side)
        with self.lock:
            face, notes = self._align(rgb, name)
            with torch.inference_mode():
                self.stats["encode_face"] += 1
                w_plus = self.model.encode_face(io.to_tensor(face, self.model.device))
        preview = io.resize(face, self.model.size)
        self.faces.put(key, (w_plus, preview))
        return ref, preview, notes

    def random_face(self, seed: int | None = None) -> tuple[dict, np.ndarray]:
        """A random face: z ~ N(0, I) from ``torch.Generator().manual_seed(seed)``, the
        checkpoint's truncation.  Returns ``(ref, preview of the natural face)``."""
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        ref = {"kind": "seed", "seed": seed, "name": f"random face {seed}"}
        return ref, self._face_entry(ref)[1]

    def _face_entry(self, ref: dict) -> tuple[torch.Tensor, np.ndarray]:
        if not isinstance(ref, dict):
            raise WebError("choose a face first: upload one, pick one or press Random face")
        key = ref["key"] if ref["kind"] == "image" else f"seed:{ref['seed']}"
        cached = self.faces.get(key)
        if cached is not None:
            return cached
        if ref["kind"] == "image":  # evicted from the cache: read it again
            self.load_face(ref["path"], ref["name"])
            entry = self.faces.get(key)
            if entry is None:
                raise WebError(f"{ref['name']}: the face image is no longer available, please choose it again")
            return entry
        m = self.model
        with self.lock, torch.inference_mode():
            g = torch.Generator(device=m.device).manual_seed(ref["seed"])
            z = torch.randn(1, m.generator.style_dim, generator=g, device=m.device)
            w_plus = m.face_w(z).unsqueeze(1).expand(-1, m.n_latent, -1).contiguous()
            self.stats["synthesize"] += 1
            preview = io.to_uint8(m.synthesize(w_plus=w_plus))[0]
        self.faces.put(key, (w_plus, preview))
        return w_plus, preview

    # -- styles ------------------------------------------------------------------------------
    def load_style(self, path: str | os.PathLike, name: str | None = None) -> tuple[dict, np.ndarray]:
        """Check, decode and embed a style image (cached by content): ``(ref, preview)``."""
        name = name or Path(path).name
        if not self.can_embed_styles:
            raise WebError("this checkpoint has no style encoder; use Random style")
        data = read_upload(path, self.max_bytes)
        key = hashlib.sha256(data).hexdigest()
        ref = {"kind": "image", "key": key, "path": str(path), "name": display_name(name)}
        cached = self.styles.get(key)
        if cached is not None:
            return ref, cached[1]
        rgb = decode_upload(data, name, self.max_side)
        with self.lock, torch.inference_mode():
            self.stats["embed_style"] += 1
            z_embed = self.model.embed_style(io.to_tensor(rgb, self.model.device))
        preview = fit_within(rgb, PREVIEW_SIDE)
        self.styles.put(key, (z_embed, preview))
        return ref, preview

    def random_style(self, seed: int | None = None) -> dict:
        """A random style code z_embed ~ N(0, I) from ``torch.Generator().manual_seed(seed)``
        (the latent-guided mode of the official ``generate_image_pairs.py``)."""
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        ref = {"kind": "seed", "seed": seed, "name": f"random style {seed}"}
        self._style_code(ref)
        return ref

    def _style_code(self, ref: dict) -> torch.Tensor:
        if not isinstance(ref, dict):
            raise WebError("choose a style first: upload one, pick one or press Random style")
        key = ref["key"] if ref["kind"] == "image" else f"seed:{ref['seed']}"
        cached = self.styles.get(key)
        if cached is not None:
            return cached[0]
        if ref["kind"] == "image":  # evicted from the cache: read it again
            self.load_style(ref["path"], ref["name"])
            entry = self.styles.get(key)
            if entry is None:
                raise WebError(f"{ref['name']}: the style image is no longer available, please choose it again")
            return entry[0]
        m = self.model
        g = torch.Generator(device=m.device).manual_seed(ref["seed"])
        z = torch.randn(1, m.generator.style_dim, generator=g, device=m.device)
        self.styles.put(key, (z, None))
        return z

    # -- generation --------------------------------------------------------------------------
    def _index(self, add_weight_index) -> int:
        try:
            i = int(round(float(add_weight_index)))
        except (TypeError, ValueError):
            raise WebError(f"add_weight_index must be a number in 0..{self.model.n_latent}") from None
        if not 0 <= i <= self.model.n_latent:
            raise WebError(f"add_weight_index must be in 0..{self.model.n_latent}, got {i}")
        return i

    def blend(self, face_ref: dict, style_ref: dict, add_weight_index=P.TRANSFER_ADD_WEIGHT_INDEX,
              strength: float = 1.0) -> torch.Tensor:
        """W+ [1, n_latent, 512] of the stylized face (see the module doc for ``strength``)."""
        i = self._index(add_weight_index)
        try:
            s = float(strength)
        except (TypeError, ValueError):
            raise WebError("style strength must be a number in 0..1") from None
        if not 0.0 <= s <= 1.0:
            raise WebError(f"style strength must be in 0..1, got {s:g}")
        w_plus = self._face_entry(face_ref)[0]
        z_embed = self._style_code(style_ref)
        with torch.inference_mode():
            blended = self.model.blend(w_plus, z_embed, i)
            return blended if s == 1.0 else torch.lerp(w_plus, blended, s)

    def render(self, face_ref: dict, style_ref: dict, add_weight_index=P.TRANSFER_ADD_WEIGHT_INDEX,
               strength: float = 1.0) -> np.ndarray:
        """The stylized face, RGB uint8 [size, size, 3]; encoders run only on a cache miss."""
        with self.lock:
            w = self.blend(face_ref, style_ref, add_weight_index, strength)
            with torch.inference_mode():
                self.stats["synthesize"] += 1
                return io.to_uint8(self.model.synthesize(w_plus=w))[0]

    def save_png(self, image: np.ndarray, stem: str = "blendgan") -> Path:
        """Write a result as a PNG in the work folder (for download)."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:80] or "blendgan"
        return io.write_image(self._new_file(safe, ".png"), image, "png")

    def render_video(self, face_ref: dict, style_refs: Sequence[dict],
                     add_weight_index=P.VIDEO_ADD_WEIGHT_INDEX, steps: int = VIDEO_STEPS,
                     hold: int = VIDEO_HOLD, fps: float = VIDEO_FPS,
                     progress: Callable[[int, int], None] | None = None) -> Path:
        """An .mp4 of the face while its style moves through ``style_refs`` (2 or more), with
        :func:`blendgan.pipeline.interpolation_frames` and the sigmoid transition of the
        official video script (``steps`` frames per change, ``hold`` frames on each style)."""
        if len(style_refs) < 2:
            raise WebError("choose at least two styles for a video")
        i = self._index(add_weight_index)
        steps, hold = int(steps), int(hold)
        alphas = P.transition_alphas(steps, hold)
        total = (len(style_refs) - 1) * len(alphas) + hold
        if total > VIDEO_MAX_FRAMES:
            raise WebError(f"that would be {total} frames (limit {VIDEO_MAX_FRAMES}); "
                           "use fewer styles or fewer transition frames")
        path = self._new_file("blendgan_video", ".mp4")
        with self.lock:
            w_plus = self._face_entry(face_ref)[0]
            codes = [self._style_code(r) for r in style_refs]
            done = 0
            with torch.inference_mode(), io.VideoWriter(path, fps=float(fps)) as writer:
                last = None
                for k in range(len(codes) - 1):
                    for _, images in P.interpolation_frames(self.model, w_plus, codes[k], codes[k + 1], alphas,
                                                            add_weight_index=i):
                        frames = io.to_uint8(images)
                        self.stats["synthesize"] += 1
                        writer.write(frames)
                        last = frames[-1]
                        done += len(frames)
                        if progress is not None:
                            progress(done, total)
                if hold:
                    writer.write(np.repeat(last[None], hold, axis=0))
        return path


def describe(ref: dict | None) -> str:
    """A short name for a face or style reference."""
    return ref["name"] if isinstance(ref, dict) else "none"


# -- the Gradio page ------------------------------------------------------------------------------
INTRO = """\
# BlendGAN
Pick or upload a **face** and a **style**, then **Generate**. *add_weight_index* keeps the first
N of the {n_latent} W+ layers pure face (more of the face's structure); *style strength* scales the
style part of the blend (1 = the official result, 0 = the face alone). Everything runs on this
machine ({device}, {size}px); one job runs at a time.
"""


class Handlers:
    """The page's callbacks: :class:`Studio` calls with their failures turned into messages.

    A :class:`WebError` becomes ``gradio.Error`` with its one line (no stack trace in the
    page); anything unexpected is logged with its traceback on the server and reported in one
    line.  Notes (e.g. "2 faces found") are shown with ``gradio.Warning``.
    """

    def __init__(self, studio: Studio, gr, face_examples: Sequence[Path] = (), style_examples: Sequence[Path] = ()):
        self.studio, self.gr = studio, gr
        self.face_examples, self.style_examples = list(face_examples), list(style_examples)

    def _guard(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WebError as exc:
            raise self.gr.Error(str(exc), print_exception=False) from None
        except self.gr.Error:
            raise
        except Exception as exc:  # never a stack trace in the page
            log.exception("web demo: unexpected error")
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise self.gr.Error(f"internal error ({type(exc).__name__}{': ' + first if first else ''}); "
                                "see the server log", print_exception=False) from None

    def _notes(self, notes: Sequence[str]) -> None:
        for note in notes:
            self.gr.Warning(note)

    # faces
    def face_upload(self, path):
        """Uploaded face file -> (face ref, preview, status)."""
        if not path:
            raise self.gr.Error("no file received", print_exception=False)
        ref, preview, notes = self._guard(self.studio.load_face, path)
        self._notes(notes)
        return ref, preview, f"Face: **{describe(ref)}**"

    def face_pick(self, index):
        """Gallery index of an example face -> (face ref, preview, status)."""
        if index is None or not 0 <= int(index) < len(self.face_examples):
            raise self.gr.Error("pick one of the example faces", print_exception=False)
        return self.face_upload(str(self.face_examples[int(index)]))

    def face_random(self):
        """A new random face -> (face ref, preview, status)."""
        ref, preview = self._guard(self.studio.random_face)
        return ref, preview, f"Face: **{describe(ref)}** (seed {ref['seed']})"

    # styles
    def style_upload(self, path):
        """Uploaded style file -> (style ref, preview, status)."""
        if not path:
            raise self.gr.Error("no file received", print_exception=False)
        ref, preview = self._guard(self.studio.load_style, path)
        return ref, preview, f"Style: **{describe(ref)}**"

    def style_pick(self, index):
        """Gallery index of an example style -> (style ref, preview, status)."""
        if index is None or not 0 <= int(index) < len(self.style_examples):
            raise self.gr.Error("pick one of the example styles", print_exception=False)
        return self.style_upload(str(self.style_examples[int(index)]))

    def style_random(self):
        """A new random style code -> (style ref, no preview, status)."""
        ref = self._guard(self.studio.random_style)
        return ref, None, f"Style: **{describe(ref)}** (seed {ref['seed']}; a random code has no picture)"

    # generation
    def generate(self, face_ref, style_ref, add_weight_index, strength, history):
        """-> (result PNG path, download path, history gallery, history state, status)."""
        t0 = time.perf_counter()
        image = self._guard(self.studio.render, face_ref, style_ref, add_weight_index, strength)
        i, s = int(round(float(add_weight_index))), float(strength)
        stem = f"{describe(face_ref)}_x_{describe(style_ref)}_i{i}_s{s:.2f}"
        path = self._guard(self.studio.save_png, image, stem)
        history = dict(history) if isinstance(history, dict) else {"n": 0, "items": []}
        n = history["n"] + 1
        caption = f"#{n} {describe(face_ref)} × {describe(style_ref)}, i={i}, s={s:.2f}"
        items = [(str(path), caption)] + [it for it in history.get("items", []) if Path(it[0]).exists()]
        history = {"n": n, "items": items[:HISTORY_SIZE]}
        status = (f"**Result #{n}**: {describe(face_ref)} × {describe(style_ref)}, add_weight_index {i}, "
                  f"strength {s:.2f} ({time.perf_counter() - t0:.1f} s)")
        return str(path), str(path), history["items"], history, status

    def maybe_generate(self, face_ref, style_ref, add_weight_index, strength, history):
        """:meth:`generate` when both a face and a style are chosen; otherwise nothing changes."""
        if not isinstance(face_ref, dict) or not isinstance(style_ref, dict):
            return (self.gr.skip(),) * 5
        return self.generate(face_ref, style_ref, add_weight_index, strength, history)

    # video
    def video(self, face_ref, style_names, uploads, use_current, style_ref, add_weight_index, steps, hold, fps,
              progress=None):
        """-> (mp4 path, status).  Styles: the chosen examples, the uploads, and optionally the
        style of the image tab, in that order."""
        refs = []
        by_name = {p.stem: p for p in self.style_examples}
        for name in style_names or []:
            if name in by_name:
                refs.append(self._guard(self.studio.load_style, str(by_name[name]))[0])
        for path in uploads or []:
            refs.append(self._guard(self.studio.load_style, str(path))[0])
        if use_current and isinstance(style_ref, dict):
            refs.append(style_ref)
        if not isinstance(face_ref, dict):
            raise self.gr.Error("choose a face in the Image tab first", print_exception=False)
        t0 = time.perf_counter()
        report = None if progress is None else (
            lambda done, total: progress(done / total, desc=f"frame {done}/{total}"))
        path = self._guard(self.studio.render_video, face_ref, refs, add_weight_index, steps, hold, fps, report)
        if io.video_backend() != "pyav":
            self.gr.Warning('this video is MPEG-4 (mp4v), which browsers may not play; '
                            'pip install "blendgan[video]" for H.264')
        return str(path), (f"**Video**: {describe(face_ref)} through {len(refs)} styles "
                           f"({time.perf_counter() - t0:.1f} s)")


def _select_index(evt) -> int | None:
    index = getattr(evt, "index", None)
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    return index


def build_app(model, *, face_examples: str | os.PathLike | None = EXAMPLES_DIR / "face_imgs",
              style_examples: str | os.PathLike | None = EXAMPLES_DIR / "style_imgs",
              studio: Studio | None = None, title: str = "BlendGAN"):
    """The demo page for a loaded :class:`blendgan.BlendGAN` (a ``gradio.Blocks``, queued one
    event at a time).  ``face_examples`` / ``style_examples``: folders shown as galleries
    (default: the repository's ``test_imgs``; None or missing hides them).  ``studio``: an
    existing :class:`Studio` (else one is made; it is kept as ``demo.studio``)."""
    gr = import_gradio()
    studio = studio or Studio(model)
    faces, styles = list_examples(face_examples), list_examples(style_examples)
    h = Handlers(studio, gr, faces, styles)
    n_latent = model.n_latent

    # Gradio keeps its own copies of uploads and results (face photos among them): checked every
    # 10 minutes, removed once an hour old, and all removed when the server closes
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        face_state, style_state = gr.State(None), gr.State(None)
        history_state = gr.State({"n": 0, "items": []})
        gr.Markdown(INTRO.format(n_latent=n_latent, device=model.device, size=model.size))
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column():
                    face_preview = gr.Image(label="Face", interactive=False, type="numpy", height=256,
                                            elem_id="face-preview")
                    face_upload = gr.File(label="Upload a face", file_types=["image"], type="filepath",
                                          height=110, elem_id="face-upload", visible=studio.can_encode_faces)
                    face_gallery = gr.Gallery(value=[(str(p), p.stem) for p in faces], label="…or pick a face",
                                              columns=4, height=140, allow_preview=False, interactive=False,
                                              elem_id="face-gallery", visible=bool(faces) and studio.can_encode_faces)
                    face_random = gr.Button("Random face", elem_id="random-face")
                with gr.Column():
                    style_preview = gr.Image(label="Style", interactive=False, type="numpy", height=256,
                                             elem_id="style-preview")
                    style_upload = gr.File(label="Upload a style", file_types=["image"], type="filepath",
                                           height=110, elem_id="style-upload", visible=studio.can_embed_styles)
                    style_gallery = gr.Gallery(value=[(str(p), p.stem) for p in styles], label="…or pick a style",
                                               columns=4, height=140, allow_preview=False, interactive=False,
                                               elem_id="style-gallery",
                                               visible=bool(styles) and studio.can_embed_styles)
                    style_random = gr.Button("Random style", elem_id="random-style")
                with gr.Column():
                    result = gr.Image(label="Result", interactive=False, type="filepath", format="png", height=256,
                                      elem_id="result-image")
                    awi = gr.Slider(0, n_latent, value=min(P.TRANSFER_ADD_WEIGHT_INDEX, n_latent), step=1,
                                    label="add_weight_index",
                                    info=f"first N of {n_latent} W+ layers stay pure face (0 = learned weights only)",
                                    elem_id="awi-slider")
                    strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="style strength",
                                         info="scales the style part of the blend (1 = official, 0 = face only)",
                                         elem_id="strength-slider")
                    generate = gr.Button("Generate", variant="primary", elem_id="generate")
                    download = gr.DownloadButton("Download PNG", elem_id="download-png")
            status = gr.Markdown("Choose a face and a style.", elem_id="status")
            history = gr.Gallery(label="Last results", columns=HISTORY_SIZE, fit_columns=False, height=200,
                                 allow_preview=True, interactive=False, elem_id="history")

        with gr.Tab("Video"):
            gr.Markdown("The face chosen in the Image tab moves through the styles below, in order "
                        f"(at most {VIDEO_MAX_FRAMES} frames).")
            with gr.Row():
                with gr.Column():
                    video_styles = gr.CheckboxGroup([p.stem for p in styles], value=[p.stem for p in styles[:2]],
                                                    label="Example styles", elem_id="video-styles",
                                                    visible=bool(styles) and studio.can_embed_styles)
                    video_uploads = gr.File(label="More styles", file_count="multiple", file_types=["image"],
                                            type="filepath", height=110, elem_id="video-uploads",
                                            visible=studio.can_embed_styles)
                    video_current = gr.Checkbox(label="Add the style of the Image tab at the end", value=False,
                                                elem_id="video-current")
                    video_awi = gr.Slider(0, n_latent, value=min(P.VIDEO_ADD_WEIGHT_INDEX, n_latent), step=1,
                                          label="add_weight_index", elem_id="video-awi")
                    video_steps = gr.Slider(2, 30, value=VIDEO_STEPS, step=1, label="transition frames per style change",
                                            elem_id="video-steps")
                    video_hold = gr.Slider(0, 15, value=VIDEO_HOLD, step=1, label="frames held on each style",
                                           elem_id="video-hold")
                    video_fps = gr.Slider(1, 30, value=VIDEO_FPS, step=1, label="frames per second",
                                          elem_id="video-fps")
                    video_button = gr.Button("Render video", variant="primary", elem_id="render-video")
                with gr.Column():
                    video_out = gr.Video(label="Video", interactive=False, height=384, elem_id="video-out", loop=True)
                    video_status = gr.Markdown("", elem_id="video-status")

        # -- events --------------------------------------------------------------------------
        gen_inputs = [face_state, style_state, awi, strength, history_state]
        gen_outputs = [result, download, history, history_state, status]

        def pick_face(evt):
            return h.face_pick(_select_index(evt))

        def pick_style(evt):
            return h.style_pick(_select_index(evt))

        # gradio finds the event-data argument by its (evaluated) annotation
        pick_face.__annotations__ = {"evt": gr.SelectData}
        pick_style.__annotations__ = {"evt": gr.SelectData}

        def render_video(face_ref, names, uploads, use_current, style_ref, i, steps, hold, fps,
                         progress=gr.Progress()):
            return h.video(face_ref, names, uploads, use_current, style_ref, i, steps, hold, fps, progress)

        face_outputs = [face_state, face_preview, status]
        style_outputs = [style_state, style_preview, status]
        # a new face or style, or a slider let go, re-renders at once (codes are cached, so only
        # the generator runs); Generate does the same on demand
        uploaded_face = face_upload.upload(h.face_upload, face_upload, face_outputs)
        uploaded_style = style_upload.upload(h.style_upload, style_upload, style_outputs)
        for event in (uploaded_face, face_gallery.select(pick_face, None, face_outputs),
                      face_random.click(h.face_random, None, face_outputs),
                      uploaded_style, style_gallery.select(pick_style, None, style_outputs),
                      style_random.click(h.style_random, None, style_outputs)):
            event.success(h.maybe_generate, gen_inputs, gen_outputs)
        # the upload boxes are drop zones: emptied after each upload, good or bad (the preview
        # above shows what was taken), so that the next file can be dropped at once
        # (.then does not follow a failed event in Gradio 6, hence .failure as well)
        for event, box in ((uploaded_face, face_upload), (uploaded_style, style_upload)):
            event.then(lambda: None, None, box, queue=False)
            event.failure(lambda: None, None, box, queue=False)
        for slider in (awi, strength):
            slider.release(h.maybe_generate, gen_inputs, gen_outputs, trigger_mode="always_last")
        generate.click(h.generate, gen_inputs, gen_outputs)
        video_button.click(render_video, [face_state, video_styles, video_uploads, video_current, style_state,
                                          video_awi, video_steps, video_hold, video_fps], [video_out, video_status])

    demo.queue(default_concurrency_limit=1, max_size=32)
    demo.studio = studio
    return demo


def launch_kwargs(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, max_file_size: int = MAX_UPLOAD_BYTES) -> dict:
    """The ``Blocks.launch`` arguments of the demo: local only, no share link, no SSR (which
    needs Node), no MCP server, no monitoring, no run history, uploads capped at ``max_file_size`` bytes."""
    return dict(server_name=host, server_port=int(port), share=False, ssr_mode=False, mcp_server=False,
                enable_monitoring=False, pwa=False, run_history=False, max_file_size=int(max_file_size),
                show_error=False, inbrowser=False)


def launch(ckpt: str | os.PathLike = DEFAULT_CKPT, psp_encoder: str | os.PathLike | None = DEFAULT_PSP,
           host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, device: str | torch.device | None = "auto", *,
           block: bool = True, quiet: bool = False, **build_kwargs):
    """Load the checkpoints and serve the demo on ``http://host:port``.

    ``block``: serve until Ctrl-C (the CLI); False returns the running ``gradio.Blocks``
    (stop it with ``demo.close(); demo.studio.close()``).  ``psp_encoder=None`` serves random faces only.  Raises
    :class:`WebDependencyError` without Gradio and ``blendgan.CheckpointError`` for a bad
    checkpoint.  Analytics are disabled on the Blocks itself; no environment variable is
    read or set.
    """
    import_gradio()  # fail before loading the weights
    from .model import BlendGAN
    model = BlendGAN.from_pretrained(ckpt, psp_encoder=psp_encoder, device=device)
    demo = build_app(model, **build_kwargs)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the demo", host)
    try:
        demo.launch(prevent_thread_lock=not block, quiet=quiet, **launch_kwargs(host, port))
    finally:
        if block:
            demo.studio.close()
    return demo


# -- command line ---------------------------------------------------------------------------------
def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register ``blendgan web`` on the CLI's subparsers (``set_defaults(func=cmd_web)``)."""
    p = subparsers.add_parser("web", help="local web demo in the browser (needs blendgan[web])",
                              description="Serve the BlendGAN demo page locally (Gradio).")
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    p.add_argument("--ckpt", default=DEFAULT_CKPT, help="BlendGAN checkpoint (default %(default)s)")
    p.add_argument("--psp-encoder", "--psp_encoder_ckpt", dest="psp_encoder", default=DEFAULT_PSP,
                   help="pSp encoder checkpoint, or 'none' for random faces only (default %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=cmd_web)
    return p


def cmd_web(args: argparse.Namespace) -> int:
    """``blendgan web``: serve until Ctrl-C; exit status 0, or a one-line error (status 2 via the CLI)."""
    from .cli import CLIError
    from .model import configure_backends
    psp = None if str(args.psp_encoder).lower() == "none" else args.psp_encoder
    configure_backends("fp32")  # the demo computes in strict float32, as the other commands by default
    try:
        launch(args.ckpt, psp, host=args.host, port=args.port, device=args.device)
    except WebDependencyError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:  # port taken, address not available
        raise CLIError(f"cannot serve on {args.host}:{args.port}: {str(exc).splitlines()[0]}") from None
    return 0
