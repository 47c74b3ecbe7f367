"""A model plus what it has already computed: the library's working object.

:class:`Session` encodes each face and style image once (the expensive part: pSp and the
VGG19 style encoder) and keeps the codes, keyed by the image's content, so that every later
render is one generator call::

    from blendgan import BlendGAN, Session
    s = Session(BlendGAN.from_pretrained("pretrained_models/blendgan.pt",
                                         psp_encoder="pretrained_models/psp_encoder.pt"))
    face, style = s.face("me.jpg"), s.style("van_gogh.png")
    image = s.render(face, style, add_weight_index=6)     # RGB uint8 [size, size, 3]
    image = s.render(face, style, add_weight_index=8)     # the encoders do not run again

The folder jobs, the web page and Python users share it.  Codes stay in memory (an LRU of
``capacity`` entries each for faces and styles) and, with ``cache_dir``, on disk across runs.
"""
from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

import numpy as np
import torch

from . import defaults, inversion, io
from .align.prepare import FacePreparer
from .cache import LRU, EncodingCache
from .controls import Strength
from .errors import UsageError
from .model import BlendGAN
from .runtime import make_generator
from .synthesis import style_tour

#: An image given to a session: a file path, encoded bytes, or decoded RGB uint8 [H, W, 3].
ImageSource = Union[str, os.PathLike, bytes, np.ndarray]

DEFAULT_CAPACITY = 256
#: PTI results kept in memory per session (each holds a copy of the synthesis weights)
TUNED_KEPT = 2

_MODEL_LOCKS: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model) -> threading.RLock:
    """The lock shared by every session of ``model``: one computation at a time per model."""
    with _LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


@dataclass(frozen=True)
class Face:
    """A face the session has encoded: ``w_plus`` [1, n_latent, 512], the RGB uint8 image it
    came from (aligned and resized as encoded; for a random face, its natural image) and notes
    for the user.  ``key`` identifies it by content (``sha256:…``) or seed (``seed:…``).

    After :meth:`Session.refine`: ``inversion`` names the method, ``loss`` and ``start_loss``
    are the reconstruction losses after and before (:mod:`blendgan.inversion`), ``seconds``
    the time the refinement took (when it was computed, cached or not), and ``model`` is the
    model to synthesize it with when that is not the session's (PTI's tuned copy)."""
    key: str
    name: str
    w_plus: torch.Tensor
    image: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    inversion: str = "psp"
    loss: float | None = None
    start_loss: float | None = None
    seconds: float | None = None
    model: Any = None


@dataclass(frozen=True)
class Style:
    """A style the session has embedded: ``z_embed`` [1, 512] and the RGB uint8 image it came
    from (None for a random style code)."""
    key: str
    name: str
    z_embed: torch.Tensor
    image: np.ndarray | None = None


#: A style for :meth:`Session.blend`: a :class:`Style`, a code [1, 512], or several of them to mix.
StyleLike = Union[Style, torch.Tensor, Sequence[Union[Style, torch.Tensor]]]


@dataclass
class _Decoded:
    key: str
    name: str
    data: bytes | None = None
    rgb: np.ndarray | None = None


def content_key(data: bytes | np.ndarray) -> str:
    """``sha256:<hex>`` of encoded bytes, or of a decoded array's shape and pixels."""
    digest = hashlib.sha256()
    if isinstance(data, np.ndarray):
        digest.update(f"{data.dtype}{data.shape}".encode())
        digest.update(np.ascontiguousarray(data).tobytes())
    else:
        digest.update(data)
    return "sha256:" + digest.hexdigest()


class Session:
    """A :class:`blendgan.BlendGAN` with its face and style codes cached (see the module doc).

    ``align``, ``aligner`` and ``align_optional`` set how input faces are prepared
    (:class:`blendgan.align.FacePreparer`); ``cache_dir`` keeps codes on disk between runs;
    ``capacity``: codes kept in memory, each for faces and styles.  Sessions of one model
    share a lock (:func:`model_lock`), so threads may share a session or a model.
    """

    def __init__(self, model: BlendGAN, *, align: str = "never", aligner: Any = None, align_optional: bool = False,
                 cache_dir: str | os.PathLike | None = None, capacity: int = DEFAULT_CAPACITY):
        self.model = model
        self.lock = model_lock(model)
        self.prepare = FacePreparer(align, model.size, aligner=aligner, optional=align_optional)
        self.disk = EncodingCache(cache_dir, model) if cache_dir is not None else None
        self.faces = LRU(capacity)     # (kind, key) -> w_plus [1, n_latent, 512]
        self.refined = LRU(capacity)   # (settings, key) -> record of a refined face (see refine)
        self.tuned = LRU(TUNED_KEPT)   # (settings, key) -> PTI's tuned model
        self.styles = LRU(capacity)    # (kind, key) -> z_embed [1, 512]
        #: encoder and generator calls so far (``encode_face``, ``embed_style``, ``synthesize``, ``align``,
        #: ``invert``)
        self.stats: Counter = Counter()

    # -- inputs -------------------------------------------------------------------------------
    @staticmethod
    def _source(source: ImageSource, name: str | None, key: str | None) -> _Decoded:
        """Read a file once (its bytes key the caches and are decoded from memory).  ``key``
        overrides the content key (for callers that decoded the bytes themselves)."""
        if isinstance(source, np.ndarray):
            return _Decoded(key or content_key(source), name or "image", rgb=source)
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            return _Decoded(key or content_key(data), name or "image", data=data)
        path = Path(source)
        data = io.read_bytes(path)
        return _Decoded(key or content_key(data), name or str(path), data=data)

    @staticmethod
    def _rgb(src: _Decoded) -> np.ndarray:
        if src.rgb is None:
            src.rgb = io.decode_image(src.data, src.name)
        return src.rgb

    def face_kind(self, size: int | None = None) -> str:
        """Cache kind of faces prepared by this session (and resized to ``size`` before encoding)."""
        return f"{self.prepare.kind}{size or ''}"

    @staticmethod
    def style_kind(size: int | None = None) -> str:
        return f"style{size or ''}"

    def _code(self, memory: LRU, kind: str, key: str, compute) -> torch.Tensor:
        code = memory.get((kind, key))
        if code is None:
            digest = key.split(":", 1)[1]
            code = self.disk.get(kind, digest, compute) if self.disk is not None else compute()
            memory.put((kind, key), code)
        return code

    # -- faces and styles ---------------------------------------------------------------------
    @torch.inference_mode()
    def face(self, source: ImageSource, name: str | None = None, *, size: int | None = None,
             key: str | None = None) -> Face:
        """Prepare (align when needed) and pSp-encode a face image; ``size`` resizes the prepared
        face to ``size`` px first (as the official video script).  Encodes once per content
        (``key``, default :func:`content_key` of the file's bytes or of the array)."""
        if self.model.psp is None:
            raise UsageError("encoding faces needs the pSp encoder: load the model with psp_encoder=...")
        src = self._source(source, name, key)
        with self.lock:
            prepared = self.prepare.prepare(self._rgb(src), src.name)
            self.stats["align"] = self.prepare.count
            image = io.resize(prepared.image, size) if size else prepared.image

            def encode() -> torch.Tensor:
                self.stats["encode_face"] += 1
                return self.model.encode_face(io.to_tensor(image, self.model.device))
            w_plus = self._code(self.faces, self.face_kind(size), src.key, encode)
        return Face(src.key, src.name, w_plus, image, tuple(prepared.notes))

    @torch.inference_mode()
    def style(self, source: ImageSource, name: str | None = None, *, size: int | None = None,
              key: str | None = None) -> Style:
        """Embed a style image (at its own size: the encoder pools to 256; ``size`` resizes it
        to ``size`` px first, as the official video script).  Embeds once per content (``key``)."""
        if not self.model.has_style_encoder:
            raise UsageError("this checkpoint has no style encoder ('embedder.*' weights); use random styles")
        src = self._source(source, name, key)
        with self.lock:
            image = self._rgb(src)
            image = io.resize(image, size) if size else image

            def embed() -> torch.Tensor:
                self.stats["embed_style"] += 1
                return self.model.embed_style(io.to_tensor(image, self.model.device))
            z_embed = self._code(self.styles, self.style_kind(size), src.key, embed)
        return Style(src.key, src.name, z_embed, image)

    @torch.inference_mode()
    def random_face(self, seed: int, truncation: float | None = None) -> Face:
        """A random face: z ~ N(0, I) from ``make_generator(seed)`` on the model's device, the
        checkpoint's truncation (or ``truncation``); ``image`` is its natural face."""
        key = f"seed:{int(seed)}" if truncation is None else f"seed:{int(seed)}:t{truncation}"
        m = self.model
        with self.lock:
            w_plus = self.faces.get(("random", key))
            if w_plus is None:
                z = torch.randn(1, m.generator.style_dim, generator=make_generator(seed, m.device), device=m.device)
                w_plus = m.face_w_plus(z, truncation).contiguous()
                self.faces.put(("random", key), w_plus)
            self.stats["synthesize"] += 1
            image = io.to_uint8(m.synthesize(w_plus=w_plus))[0]
        return Face(key, f"random face {int(seed)}", w_plus, image)

    def random_style(self, seed: int) -> Style:
        """A random style code z_embed ~ N(0, I) from ``make_generator(seed)`` on the model's
        device (the latent-guided mode of the official ``generate_image_pairs.py``)."""
        m = self.model
        z = torch.randn(1, m.generator.style_dim, generator=make_generator(seed, m.device), device=m.device)
        return Style(f"seed:{int(seed)}", f"random style {int(seed)}", z)

    def refine(self, face: Face, method: str = "optimize", steps: int | None = None, *,
               generator: torch.Generator | None = None,
               progress: inversion.Progress | None = None) -> Face:
        """``face`` (from :meth:`face`) inverted again by ``method`` ('psp', 'optimize' or 'pti',
        see :mod:`blendgan.inversion`) with ``steps`` (default
        :data:`blendgan.defaults.INVERT_STEPS`), starting from its pSp codes: a new
        :class:`Face` with the refined ``w_plus``, its losses and, for 'pti', the ``model`` to
        render it with (:meth:`render`, :meth:`tour` use it).  Computed once per face image
        and settings: kept in memory (PTI's tuned models: the last :data:`TUNED_KEPT`) and,
        with ``cache_dir``, on disk (a PTI entry holds the tuned synthesis weights: ~100 MB).
        ``generator``: see :func:`blendgan.inversion.invert` (results do not depend on it)."""
        settings = inversion.settings_of(method, steps)
        if not isinstance(face, Face) or face.image is None:
            raise UsageError("refine takes a Face with its image (from Session.face)")
        m = self.model
        image = face.image
        key = content_key(np.ascontiguousarray(image))
        memo = (settings.key(), key)
        names = self._record_shapes(settings.method)
        with self.lock:
            record = self.refined.get(memo)
            tuned = self.tuned.get(memo) if settings.method == "pti" else None
            if record is None or settings.method == "pti" and tuned is None:
                def compute() -> dict[str, torch.Tensor]:
                    self.stats["invert"] += 1
                    inv = inversion.invert(m, io.to_tensor(image, m.device), settings.method, settings.steps,
                                           generator=generator, start=face.w_plus, progress=progress)
                    out = {"w_plus": inv.w_plus, "loss": inv.loss, "start_loss": inv.start_loss,
                           "seconds": torch.tensor([inv.seconds])}
                    if inv.model is not m:
                        out.update({f"synthesis.{k}": v for k, v in self._synthesis_state(inv.model).items()})
                    return out
                kind = f"refine-{settings.key()}"
                full = self.disk.get_record(kind, key.split(":", 1)[1], compute, names) \
                    if self.disk is not None else compute()
                if settings.method == "pti":
                    tuned = self._tuned_model(full)
                    self.tuned.put(memo, tuned)
                record = {k: v for k, v in full.items() if not k.startswith("synthesis.")}
                self.refined.put(memo, record)
        loss, start, seconds = (float(record[k].reshape(-1)[0]) for k in ("loss", "start_loss", "seconds"))
        note = (f"{settings.method} ({settings.steps} steps): reconstruction loss {start:.4f} -> {loss:.4f} "
                f"in {seconds:.1f} s")
        return Face(face.key, face.name, record["w_plus"], image, face.notes + (note,), settings.method, loss, start,
                    seconds, tuned)

    def _record_shapes(self, method: str) -> dict[str, tuple[int, ...]]:
        """Names and shapes of a refined face's cache record."""
        m = self.model
        shapes = {"w_plus": (1, m.n_latent, m.generator.style_dim), "loss": (1,), "start_loss": (1,),
                  "seconds": (1,)}
        if method == "pti":
            shapes.update({f"synthesis.{k}": tuple(v.shape) for k, v in self._synthesis_state(m).items()})
        return shapes

    @staticmethod
    def _synthesis_state(model) -> dict[str, torch.Tensor]:
        """The weights PTI tunes, by name (``convs.0.conv.weight`` ...)."""
        return {f"{part}.{k}": v for part in inversion.SYNTHESIS_PARTS
                for k, v in getattr(model.generator, part).state_dict().items()}

    def _tuned_model(self, record: dict[str, torch.Tensor]):
        """A :func:`blendgan.inversion.synthesis_copy` of the model holding a record's tuned weights."""
        tuned = inversion.synthesis_copy(self.model)
        with torch.no_grad():
            for part in inversion.SYNTHESIS_PARTS:
                prefix = f"synthesis.{part}."
                getattr(tuned.generator, part).load_state_dict(
                    {k[len(prefix):]: v for k, v in record.items() if k.startswith(prefix)})
        return tuned

    def model_for(self, face: Face | torch.Tensor):
        """The model to synthesize ``face`` with: its own after PTI, else the session's."""
        return face.model if isinstance(face, Face) and face.model is not None else self.model

    def cached_face(self, key: str, size: int | None = None) -> torch.Tensor | None:
        """The W+ of a face this session encoded (or drew) with ``key``, if still in memory."""
        code = self.faces.get((self.face_kind(size), key))
        return self.faces.get(("random", key)) if code is None else code

    def cached_style(self, key: str, size: int | None = None) -> torch.Tensor | None:
        """The style code of an image this session embedded with ``key``, if still in memory."""
        return self.styles.get((self.style_kind(size), key))

    # -- images -------------------------------------------------------------------------------
    @staticmethod
    def style_codes(style: StyleLike) -> torch.Tensor:
        """z_embed of a :class:`Style` or code [1, 512], or of several, stacked for mixing: [1, K, 512]."""
        if isinstance(style, (Style, torch.Tensor)):
            return style.z_embed if isinstance(style, Style) else style
        codes = [s.z_embed if isinstance(s, Style) else s for s in style]
        if not codes:
            raise UsageError("no style given")
        return codes[0] if len(codes) == 1 else torch.stack([c.reshape(-1) for c in codes]).unsqueeze(0)

    @torch.inference_mode()
    def blend(self, face: Face | torch.Tensor, style: StyleLike,
              add_weight_index: int | None = defaults.TRANSFER_ADD_WEIGHT_INDEX, strength: Strength = 1.0, *,
              preserve_color: bool = False, style_weights: Sequence[float] | None = None) -> torch.Tensor:
        """W+ [1, n_latent, 512] of ``face`` stylized by ``style`` (objects of this session or
        their codes; a list of styles is mixed by ``style_weights``).  ``strength``,
        ``preserve_color``: see :mod:`blendgan.controls` (strength 1 is the official result bit
        for bit, 0 the face alone)."""
        w_plus = face.w_plus if isinstance(face, Face) else face
        return self.model.blend(w_plus, self.style_codes(style), add_weight_index, strength=strength,
                                preserve_color=preserve_color, style_weights=style_weights)

    @torch.inference_mode()
    def render(self, face: Face | torch.Tensor, style: StyleLike,
               add_weight_index: int | None = defaults.TRANSFER_ADD_WEIGHT_INDEX, strength: Strength = 1.0, *,
               preserve_color: bool = False, style_weights: Sequence[float] | None = None) -> np.ndarray:
        """The stylized face, RGB uint8 [size, size, 3] (see :meth:`blend`)."""
        with self.lock:
            w = self.blend(face, style, add_weight_index, strength, preserve_color=preserve_color,
                           style_weights=style_weights)
            self.stats["synthesize"] += 1
            return io.to_uint8(self.model_for(face).synthesize(w_plus=w))[0]

    @torch.inference_mode()
    def tour(self, face: Face | torch.Tensor, styles: Sequence[Style | torch.Tensor], alphas: Sequence[float], *,
             add_weight_index: int | None = defaults.VIDEO_ADD_WEIGHT_INDEX, batch_size: int = defaults.BATCH_SIZE,
             strength: Strength = 1.0, preserve_color: bool = False) -> Iterator[tuple[int, slice, np.ndarray]]:
        """Frames of ``face`` moving through ``styles`` (two or more) in order:
        ``(k, slice of alphas, RGB uint8 frames [B, S, S, 3])`` during the change from style k
        to style k + 1 (:func:`blendgan.synthesis.style_tour`)."""
        if len(styles) < 2:
            raise UsageError("a style tour needs at least two styles")
        w_plus = face.w_plus if isinstance(face, Face) else face
        codes = [s.z_embed if isinstance(s, Style) else s for s in styles]
        with self.lock:
            for k, sl, images in style_tour(self.model_for(face), w_plus, codes, alphas,
                                            add_weight_index=add_weight_index, batch_size=batch_size,
                                            strength=strength, preserve_color=preserve_color):
                self.stats["synthesize"] += 1
                yield k, sl, io.to_uint8(images)
