"""The jobs, as library functions.

Tensor-level generators (:func:`sample_zs`, :func:`stylized_pairs`, :func:`transfer_batches`,
:func:`interpolation_frames`) take tensors and a ``torch.Generator``; the ``run_*``
functions add files around them (reading folders, writing outputs atomically, skipping
outputs that exist, reporting bad inputs and going on).  The defaults here are the official
scripts' and live only here; the CLI and the drop-in scripts read them from this module.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import random
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from . import io
from .model import DEFAULT_TRUNCATION_MEAN, BlendGAN

log = logging.getLogger("blendgan")
T = TypeVar("T")

DEFAULT_SEED = 0
DEFAULT_BATCH_SIZE = 4
DEFAULT_FORMAT = "jpg"
PAIRS_PICS = 20
PAIRS_ADD_WEIGHT_INDEX = 6
TRANSFER_ADD_WEIGHT_INDEX = 6
VIDEO_ADD_WEIGHT_INDEX = 7
VIDEO_STYLES = 8
VIDEO_FPS = 30
VIDEO_TRANSITION_STEPS = 20  # sigmoid samples per style change
VIDEO_HOLD_FRAMES = 10       # frames held on each style, and on the last frame
VIDEO_LAYOUTS = ("triptych", "output")


@dataclass
class JobReport:
    """What a job did: outputs written, outputs that already existed, inputs that failed."""
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)

    def summary(self) -> str:
        return (f"{len(self.written)} written, {len(self.skipped)} already present (skipped), "
                f"{len(self.failed)} failed")


@dataclass(frozen=True)
class Shard:
    """This process's share of a job: work units ``k`` with ``k % world == rank``.

    Units are whole batches (or whole videos), so every image is computed in the same
    batch as in a single-process run.  ``torchrun`` sets ``RANK``/``WORLD_SIZE``.
    """
    rank: int = 0
    world: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world:
            raise ValueError(f"invalid shard {self.rank}/{self.world}")

    def mine(self, unit: int) -> bool:
        return unit % self.world == self.rank

    @classmethod
    def from_env(cls, environ=None) -> "Shard":
        env = os.environ if environ is None else environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)))


class EncodingCache:
    """Face codes (W+) and style codes (z_embed) on disk, so a rerun over the same folders
    skips encoding.  Keyed by the image file's bytes, the preprocessing and a fingerprint
    of the encoder weights; entries are small ``.pt`` tensors written atomically."""

    def __init__(self, root: str | Path, model: BlendGAN):
        self.root = io.prepare_outdir(root)
        self.model = model
        self._prints: dict[str, str] = {}

    @staticmethod
    def _is_style(kind: str) -> bool:
        return kind.startswith("style")

    def _fingerprint(self, kind: str) -> str:
        """Hash of every weight and buffer of the encoder behind ``kind`` (names, shapes and
        values), so that a code computed by other weights is never reused."""
        if kind not in self._prints:
            net = self.model.generator.embedder if self._is_style(kind) else self.model.psp
            digest = hashlib.sha256(f"{kind}:{self.model.dtype}".encode())
            for name, tensor in net.state_dict().items():
                t = tensor.detach().to("cpu", torch.float32).contiguous()
                digest.update(f"{name}{tuple(t.shape)}".encode())
                if t.numel():
                    digest.update(memoryview(t.numpy()).cast("B"))
            self._prints[kind] = digest.hexdigest()[:16]
        return self._prints[kind]

    def shape(self, kind: str) -> tuple[int, ...]:
        """Shape of one cached code: z_embed [1, 512] for styles, W+ [1, n_latent, 512] for faces."""
        dim = self.model.generator.style_dim
        return (1, dim) if self._is_style(kind) else (1, self.model.n_latent, dim)

    def path(self, kind: str, image: Path) -> Path:
        digest = hashlib.sha256(image.read_bytes()).hexdigest()[:32]
        return self.root / f"{kind}-{self._fingerprint(kind)}-{digest}.pt"

    def get(self, kind: str, image: Path, compute) -> torch.Tensor:
        """The cached code of ``image`` for ``kind``, else ``compute()`` stored for next time."""
        path = self.path(kind, image)
        if path.exists():
            try:
                value = torch.load(path, map_location=self.model.device, weights_only=True)
            except Exception:  # a damaged entry is recomputed
                log.warning("%s: damaged cache entry, recomputing", path)
            else:
                if isinstance(value, torch.Tensor) and tuple(value.shape) == self.shape(kind):
                    return value.to(self.model.dtype)
                log.warning("%s: cache entry is not a %s tensor, recomputing", path, list(self.shape(kind)))
        value = compute()
        with io.atomic_path(path) as tmp:
            torch.save(value.detach().cpu().clone(), tmp)
        return value


def _encode(model: BlendGAN, cache: EncodingCache | None, kind: str, path: Path, image: np.ndarray,
            fn) -> torch.Tensor:
    """``fn`` (an encoder) of RGB ``image``, through the on-disk cache when there is one."""
    compute = lambda: fn(io.to_tensor(image, model.device))  # noqa: E731
    return cache.get(kind, path, compute) if cache else compute()


def writer_threads(device: torch.device) -> int:
    """Image-encoding threads for a job computing on ``device``: one beside CPU compute
    (it competes for the same cores), up to 8 beside a GPU, whose host cores are idle
    (a 1024-px PNG takes longer to encode than the GPU takes to synthesize it)."""
    if device.type == "cpu":
        return 1
    return max(1, min(8, (os.cpu_count() or 2) - 1))


#: Write errors that no later output can escape: the job stops instead of failing each one.
FATAL_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def write_failed(report: JobReport, path: Path, exc: OSError) -> None:
    """Output ``path`` could not be written: stop the job (one line naming it) when no later
    output can be written either (:data:`FATAL_WRITE_ERRNOS`), else report it and go on."""
    reason = f"{path}: cannot write ({exc.strerror or exc})"
    if exc.errno in FATAL_WRITE_ERRNOS:
        raise OSError(exc.errno, reason) from None
    _fail(report, path, OSError(reason))


class _BackgroundWriter:
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

    def __enter__(self) -> "_BackgroundWriter":
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


ALIGN_MODES = ("never", "auto", "always")


class FacePreparer:
    """Optional FFHQ alignment of input faces (``align``: never / auto / always).

    ``auto`` aligns images that are not square 256/512/1024 px; alignment needs the
    ``blendgan[align]`` extra and keeps the largest face.  ``kind`` names the
    preprocessing for the encoding cache.
    """

    def __init__(self, align: str = "never", size: int = 1024):
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
        self.align, self.size = align, size
        self._aligner = None
        if align != "never":
            from .align import FaceAligner
            self._aligner = FaceAligner().load()

    @property
    def kind(self) -> str:
        return "face" if self.align == "never" else f"face-align-{self.align}{self.size}"

    def __call__(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        if self._aligner is None:
            return rgb
        from .align import NoFaceError, needs_alignment
        if self.align == "auto" and not needs_alignment(rgb):
            return rgb
        crops = self._aligner.align(rgb, size=self.size)
        if not crops:
            raise NoFaceError(f"{path}: no face found")
        return crops[0]


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


def _overlapped(items: Iterable[T], device: torch.device) -> Iterable[T]:
    """:func:`one_ahead` on a GPU; on a CPU, where compute is synchronous and overlapping
    gains nothing, the items as they come (each batch is written as soon as it is made)."""
    return one_ahead(items) if device.type == "cuda" else items


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (the global RNG is untouched).

    On CUDA this reproduces the random stream of the official scripts, which called
    ``torch.manual_seed(seed)`` and drew on the GPU.
    """
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


# -- tensor level -------------------------------------------------------------------------------
def sample_zs(n: int, generator: torch.Generator, dim: int = 512) -> torch.Tensor:
    """``n`` face codes [n, dim], drawn one ``randn(1, dim)`` at a time like the official loop,
    so results do not depend on the batch size."""
    return torch.cat([torch.randn(1, dim, generator=generator, device=generator.device) for _ in range(n)])


def stylized_pairs(model: BlendGAN, zs: torch.Tensor, z_style: torch.Tensor, *,
                   truncation: float | None = None, add_weight_index: int | None = PAIRS_ADD_WEIGHT_INDEX,
                   truncation_latent: torch.Tensor | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """For face codes ``zs`` [P, 512] and one style ``z_style`` [1, 512], yield
    ``(slice, natural [B, 3, S, S], stylized [B, 3, S, S])`` per batch."""
    for sl in _batches(zs.shape[0], batch_size):
        w = model.face_w(zs[sl], truncation, truncation_latent)
        w_face = w.unsqueeze(1).expand(-1, model.n_latent, -1)
        w_styl = model.blend(w_face, z_style, add_weight_index)
        # rows below add_weight_index are pure face in both: those layers run once
        images = model.synthesis(torch.cat([w_face, w_styl]), shared=add_weight_index or 0, branches=2)
        b = w.shape[0]
        yield sl, images[:b], images[b:]


def transfer_batches(model: BlendGAN, w_plus: torch.Tensor, z_embed: torch.Tensor, *,
                     add_weight_index: int | None = TRANSFER_ADD_WEIGHT_INDEX,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[tuple[slice, torch.Tensor]]:
    """Stylize face codes ``w_plus`` [N, n_latent, 512] with styles ``z_embed`` [N or 1, 512]
    (paired row by row); yields ``(slice, images [B, 3, S, S])``."""
    n = w_plus.shape[0]
    if z_embed.shape[0] == 1:
        z_embed = z_embed.expand(n, -1)
    for sl in _batches(n, batch_size):
        yield sl, model.synthesize(w_plus=w_plus[sl], z_embed=z_embed[sl], add_weight_index=add_weight_index)


def transition_alphas(steps: int = VIDEO_TRANSITION_STEPS, hold: int = VIDEO_HOLD_FRAMES) -> list[float]:
    """Blend factors of one style change: 0, ``steps`` sigmoid samples over [-5, 5), then
    ``hold`` ones (the official ``get_alphas`` for steps=20, hold=10)."""
    xs = -5 + np.arange(max(steps, 0)) * (10 / steps) if steps > 0 else np.zeros(0)
    return [0.0] + [float(1 / (1 + np.exp(-x))) for x in xs] + [1.0] * hold


def interpolation_frames(model: BlendGAN, w_plus: torch.Tensor, z_prev: torch.Tensor, z_next: torch.Tensor,
                         alphas: Sequence[float], *, add_weight_index: int | None = VIDEO_ADD_WEIGHT_INDEX,
                         batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[tuple[slice, torch.Tensor]]:
    """Frames [B, 3, S, S] of face ``w_plus`` [1, n_latent, 512] while its style moves from
    ``z_prev`` to ``z_next`` ([1, 512]) by ``lerp`` at each alpha."""
    a = torch.tensor(list(alphas), dtype=z_prev.dtype, device=model.device).view(-1, 1)
    for sl in _batches(len(alphas), batch_size):
        z = torch.lerp(z_prev.expand(a[sl].shape[0], -1), z_next.expand(a[sl].shape[0], -1), a[sl])
        yield sl, model.synthesize(w_plus=w_plus.expand(z.shape[0], -1, -1), z_embed=z,
                                   add_weight_index=add_weight_index)


def slide_window(prev: np.ndarray, nxt: np.ndarray, alpha: float) -> np.ndarray:
    """Window of height H sliding down ``prev`` stacked over ``nxt`` (RGB [H, W, 3]) by ``alpha``."""
    h = prev.shape[0]
    top = int(h * alpha)
    return np.concatenate([prev, nxt], axis=0)[top:top + h]


# -- file level -----------------------------------------------------------------------------------
def _out_path(outdir: Path, stem: str, fmt: str) -> Path:
    """``outdir/stem.fmt``; a stem too long for a file name is cut and tagged (:func:`io.fit_name`)."""
    if fmt not in io.FORMATS:
        raise ValueError(f"format must be one of {io.FORMATS}, got {fmt!r}")
    return outdir / io.fit_name(stem, f".{fmt}")


def _inputs(path: str | Path, what: str) -> list[Path]:
    """The images of ``path`` (a folder or one image); none at all is an error."""
    images = io.list_images(path)
    if not images:
        raise io.ImageError(f"{path}: no {what} images found")
    return images


def _fail(report: JobReport, path, exc: Exception) -> None:
    reason = str(exc)
    log.warning("%s", reason if str(path) in reason else f"{path}: {reason}")
    report.failed.append((str(path), reason))


def face_codes(obj, pics: int, dim: int = 512, source: str = "zs") -> torch.Tensor:
    """Face codes given as a tensor [P, dim] / [P, 1, dim] or a list of [1, dim] tensors ->
    float32 [pics, dim] (the first ``pics``); ``source`` names them in errors."""
    if isinstance(obj, (list, tuple)):
        if not all(isinstance(t, torch.Tensor) for t in obj):
            raise ValueError(f"{source}: a list of face codes must hold tensors")
        obj = torch.stack([t.reshape(-1) for t in obj])
    if not isinstance(obj, torch.Tensor) or obj.ndim < 2 or obj.shape[-1] != dim or obj.numel() % dim:
        shape = list(obj.shape) if isinstance(obj, torch.Tensor) else type(obj).__name__
        raise ValueError(f"{source}: face codes must be a [P, {dim}] tensor, got {shape}")
    zs = obj.reshape(-1, dim).float()
    if zs.shape[0] < pics:
        raise ValueError(f"{source}: holds {zs.shape[0]} face codes, {pics} needed")
    return zs[:pics]


def load_sample_zs(path: str | Path, pics: int, dim: int = 512) -> torch.Tensor:
    """Face codes saved with ``torch.save`` (see :func:`face_codes`) -> [pics, dim]."""
    from .checkpoint import load_file
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file (expected face codes saved with torch.save)")
    return face_codes(load_file(path), pics, dim, str(path))


@torch.inference_mode()
def run_pairs(model: BlendGAN, outdir: str | Path, pics: int = PAIRS_PICS, style_image: str | Path | None = None,
              zs: torch.Tensor | None = None, truncation: float | None = None,
              truncation_mean: int = DEFAULT_TRUNCATION_MEAN, add_weight_index: int | None = PAIRS_ADD_WEIGHT_INDEX,
              seed: int = DEFAULT_SEED, batch_size: int = DEFAULT_BATCH_SIZE, fmt: str = DEFAULT_FORMAT,
              overwrite: bool = False, progress: bool = True, shard: Shard = Shard()) -> JobReport:
    """Write ``{i:06d}.{fmt}`` = [natural | stylized] for ``pics`` random faces.

    The style is ``style_image`` (embedded at its own size) or a random style code.  The
    random draws follow the official script: the truncation mean (only without a stored
    ``latent_avg``), then the style code, then one face code per picture.  With a
    ``shard``, this process writes its batches only (all codes are still drawn, so every
    image is the one a single process would write).
    """
    outdir = io.prepare_outdir(outdir)
    report = JobReport()
    g = make_generator(seed, model.device)
    t = model.default_truncation if truncation is None else truncation
    t_latent = model.truncation_latent(truncation_mean, g) if t < 1 else None
    if style_image is not None:
        z_style = model.embed_style(io.to_tensor(io.read_image(style_image), model.device))
    else:
        z_style = torch.randn(1, model.generator.style_dim, generator=g, device=model.device)
    dim = model.generator.style_dim
    zs = sample_zs(pics, g, dim) if zs is None else face_codes(zs, pics, dim).to(model.device)
    paths = [_out_path(outdir, f"{i:06d}", fmt) for i in range(pics)]
    # Batches are fixed by index, not by what is on disk: a resumed or sharded run computes
    # each image in the batch a fresh single-process run computes it in (the same bytes).
    mine = [list(range(pics))[sl] for k, sl in enumerate(_batches(pics, batch_size)) if shard.mine(k)]
    present = {i: not overwrite and paths[i].exists() for chunk in mine for i in chunk}
    report.skipped = [paths[i] for chunk in mine for i in chunk if present[i]]
    chunks = [chunk for chunk in mine if not all(present[i] for i in chunk)]

    def batches():
        """Per chunk: its indices and the started host copies of both panels."""
        for chunk in chunks:
            for _, natural, stylized in stylized_pairs(model, zs[chunk], z_style, truncation=t,
                                                       add_weight_index=add_weight_index,
                                                       truncation_latent=t_latent, batch_size=len(chunk)):
                yield chunk, io.to_uint8_async(natural), io.to_uint8_async(stylized)

    total = sum(not present[i] for chunk in chunks for i in chunk)
    with tqdm(total=total, desc="pairs", unit="img", disable=not progress) as bar, \
            _BackgroundWriter(report, writer_threads(model.device)) as writer:
        for chunk, natural, stylized in _overlapped(batches(), model.device):
            for i, a, b in zip(chunk, natural(), stylized()):
                if not present[i]:
                    writer.submit(paths[i], io.write_image, paths[i], io.hstack([a, b]), fmt)
                    bar.update(1)
    return report


def transfer_outputs(faces: Sequence[Path], styles: Sequence[Path], outdir: Path,
                     fmt: str) -> tuple[list[tuple[Path, Path, Path]], list[tuple[Path, Path, Path]]]:
    """Output file of every (face, style) pair: ``{face}_v_{style}.{fmt}`` with the names of
    :func:`io.output_stems` -> ``(pairs, clashes)`` as ``(face, style, output)`` lists.  Pairs
    whose names coincide ("x_v_y" with "z" and "x" with "y_v_z") are the ``clashes``: they
    cannot all be written."""
    face_names, style_names = io.output_stems(faces), io.output_stems(styles)
    planned = [(f, s, _out_path(outdir, f"{face_names[f]}_v_{style_names[s]}", fmt)) for f in faces for s in styles]
    uses = Counter(p.name for _, _, p in planned)
    return [t for t in planned if uses[t[2].name] == 1], [t for t in planned if uses[t[2].name] > 1]


@torch.inference_mode()
def run_transfer(model: BlendGAN, input_dir: str | Path, style_dir: str | Path, outdir: str | Path,
                 add_weight_index: int | None = TRANSFER_ADD_WEIGHT_INDEX, batch_size: int = DEFAULT_BATCH_SIZE,
                 fmt: str = DEFAULT_FORMAT, overwrite: bool = False, progress: bool = True,
                 cache_dir: str | Path | None = None, shard: Shard = Shard(), align: str = "never") -> JobReport:
    """Write ``{face}_v_{style}.{fmt}`` = [input | style | output] for every face x style.

    Each face is pSp-encoded once and each style embedded once (``cache_dir`` keeps the
    codes for later runs), both at the image's own size (both networks pool to 256
    internally); panels are resized to the model's size.  Work units are (face, batch of
    styles); a ``shard`` takes every ``world``-th unit.  ``align`` (see :class:`FacePreparer`)
    aligns the input faces first.
    """
    faces, styles = _inputs(input_dir, "face"), _inputs(style_dir, "style")
    prepare = FacePreparer(align, model.size)
    outdir = io.prepare_outdir(outdir)
    report = JobReport()
    cache = EncodingCache(cache_dir, model) if cache_dir else None
    planned, clashes = transfer_outputs(faces, styles, outdir, fmt)
    for f, s, p in clashes if shard.rank == 0 else ():  # reported once, not by every process
        _fail(report, f, ValueError(f"{f} with style {s}: output name {p.name} is shared with another "
                                    "face/style pair; rename one of the inputs"))
    by_face: dict[Path, list[tuple[Path, Path]]] = {f: [] for f in faces}
    for f, s, p in planned:
        by_face[f].append((s, p))
    # Work units are (face, a batch of its styles), fixed by the inputs alone (not by what is
    # on disk), so a resumed or sharded run computes every image in the same batch as a fresh
    # single-process run; a unit is skipped when all of its outputs exist.
    present: set[Path] = set()
    units = []
    for f in faces:
        outs = by_face[f]
        for k, sl in enumerate(_batches(len(outs), batch_size), start=len(units)):
            if not shard.mine(k):  # another process's unit: its outputs are its business
                units.append(None)
                continue
            done = {p for _, p in outs[sl] if not overwrite and p.exists()}
            report.skipped += [p for _, p in outs[sl] if p in done]
            present |= done
            units.append((f, outs[sl]) if len(done) < len(outs[sl]) else None)
    units = [u for u in units if u is not None]

    def encode(kind: str, path: Path, fn):
        image = io.read_image(path)
        if kind != "style":
            image = prepare(image, path)
        return image, _encode(model, cache, kind, path, image, fn)

    # Encode each needed style once; keep its code, re-read panels on demand (bounded memory).
    z_embed: dict[Path, torch.Tensor] = {}
    needed = list(dict.fromkeys(s for _, outs in units for s, _ in outs))
    for s in tqdm(needed, desc="styles", unit="img", disable=not progress or len(needed) < 2):
        try:
            z_embed[s] = encode("style", s, model.embed_style)[1]
        except io.ImageError as exc:
            _fail(report, s, exc)

    @functools.lru_cache(maxsize=64)
    def style_panel(path: Path) -> np.ndarray:
        return io.resize(io.read_image(path), model.size)

    def batches():
        """Per work unit: its outputs, the face panel and the started host copy of the images."""
        face: dict = {}
        for f, outs in units:
            outs = [(s, p) for s, p in outs if s in z_embed]
            if face.get("path") != f:  # units of one face are consecutive: encode it once
                face = {"path": f}
                try:
                    image, w_plus = encode(prepare.kind, f, model.encode_face)
                    face.update(panel=io.resize(image, model.size), w_plus=w_plus)
                except io.ImageError as exc:
                    _fail(report, f, exc)
            if "w_plus" not in face:
                bar.update(sum(p not in present for _, p in outs))
                continue
            if not outs:
                continue
            codes = torch.cat([z_embed[s] for s, _ in outs])
            for _, images in transfer_batches(model, face["w_plus"].expand(len(outs), -1, -1), codes,
                                              add_weight_index=add_weight_index, batch_size=len(outs)):
                yield outs, face["panel"], io.to_uint8_async(images)

    total = sum(1 for _, outs in units for s, p in outs if s in z_embed and p not in present)
    with tqdm(total=total, desc="transfer", unit="img", disable=not progress) as bar, \
            _BackgroundWriter(report, writer_threads(model.device)) as writer:
        for outs, panel, images in _overlapped(batches(), model.device):
            for (s, p), out in zip(outs, images()):
                if p not in present:
                    writer.submit(p, io.write_image, p, io.hstack([panel, style_panel(s), out]), fmt)
                    bar.update(1)
    return report


@torch.inference_mode()
def run_video(model: BlendGAN, input_dir: str | Path, style_dir: str | Path, outdir: str | Path,
              add_weight_index: int | None = VIDEO_ADD_WEIGHT_INDEX, n_styles: int = VIDEO_STYLES,
              seed: int = DEFAULT_SEED, fps: float = VIDEO_FPS, transition_steps: int = VIDEO_TRANSITION_STEPS,
              hold_frames: int = VIDEO_HOLD_FRAMES, batch_size: int = DEFAULT_BATCH_SIZE,
              overwrite: bool = False, progress: bool = True, cache_dir: str | Path | None = None,
              shard: Shard = Shard(), align: str = "never", layout: str = "triptych",
              gif: bool = False) -> JobReport:
    """Write ``{face}.mp4`` per face: [input | sliding style window | output] (``layout``
    ``'triptych'``) or the output alone (``'output'``) while the style moves through
    ``n_styles`` styles picked at random (with repeats, as the official script:
    ``random.Random(seed).choices``, one draw per face in name order).  Faces and styles are
    resized to the model's size before encoding, as the official script did.  ``gif`` writes
    ``{face}.gif`` instead (short loops).  A ``shard`` renders every ``world``-th video."""
    if layout not in VIDEO_LAYOUTS:
        raise ValueError(f"layout must be one of {VIDEO_LAYOUTS}, got {layout!r}")
    faces, styles = _inputs(input_dir, "face"), _inputs(style_dir, "style")
    outdir = io.prepare_outdir(outdir)
    report = JobReport()
    cache = EncodingCache(cache_dir, model) if cache_dir else None
    prepare = FacePreparer(align, model.size)

    @functools.lru_cache(maxsize=64)
    def style(path: Path) -> tuple[np.ndarray, torch.Tensor]:
        """Panel [S, S, 3] and code [1, 512] of a style, made once per job (styles repeat)."""
        panel = io.resize(io.read_image(path), model.size)
        return panel, _encode(model, cache, f"style{model.size}", path, panel, model.embed_style)

    rng = random.Random(seed)
    alphas = transition_alphas(transition_steps, hold_frames)
    names = io.output_stems(faces)
    unreadable: set[Path] = set()  # styles that failed once: reported once, not read again
    for k, f in enumerate(tqdm(faces, desc="video", unit="video", disable=not progress)):
        chosen = rng.choices(styles, k=n_styles)  # drawn even when skipping, so resumes pick the same
        out = outdir / io.fit_name(names[f], ".gif" if gif else ".mp4")
        if not shard.mine(k):
            continue
        if out.exists() and not overwrite:
            report.skipped.append(out)
            continue
        try:
            face = io.resize(prepare(io.read_image(f), f), model.size)
        except io.ImageError as exc:
            _fail(report, f, exc)
            continue
        panels, codes = [], []
        for s in chosen:
            if s in unreadable:
                continue
            try:
                panel, code = style(s)
            except io.ImageError as exc:
                _fail(report, s, exc)
                unreadable.add(s)
                continue
            panels.append(panel)
            codes.append(code)
        if len(panels) < 2:
            _fail(report, f, ValueError(f"{f}: needs at least 2 readable style images, got {len(panels)}"))
            continue
        w_plus = _encode(model, cache, f"{prepare.kind}{model.size}", f, face, model.encode_face)

        def frames() -> Iterator[np.ndarray]:
            """Batches of RGB frames [B, H, W, 3]: every transition, then the last frame held."""
            last = None
            for k in range(len(panels) - 1):
                batches = ((sl, io.to_uint8_async(images)) for sl, images in
                           interpolation_frames(model, w_plus, codes[k], codes[k + 1], alphas,
                                                add_weight_index=add_weight_index, batch_size=batch_size))
                for sl, images in _overlapped(batches, model.device):
                    outs = images()
                    if layout == "triptych":
                        outs = np.stack([io.hstack([face, slide_window(panels[k], panels[k + 1], a), img])
                                         for a, img in zip(alphas[sl], outs)])
                    yield outs
                    last = outs[-1]
            yield np.repeat(last[None], hold_frames, axis=0)

        try:
            if gif:
                io.write_gif((frame for batch in frames() for frame in batch), out, fps)
            else:
                with io.VideoWriter(out, fps=fps) as writer:
                    for batch in frames():
                        writer.write(batch)
        except OSError as exc:  # this video is lost (already cleaned up); the others may still be written
            write_failed(report, out, exc)
            continue
        report.written.append(out)
    return report
