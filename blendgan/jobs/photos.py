"""``blendgan transfer --paste-back``: real photos in, real photos out.

Per photo: dlib finds the faces (the largest, or every face with ``all_faces``), each is
cropped like FFHQ (:func:`blendgan.align.crop_quad`), pSp-encoded once and regenerated with
each style's code; the stylized crops are warped back into the photo with the inverse of the
alignment transform under a feathered mask (:func:`blendgan.align.paste_faces`, the code the
face videos use), so pixels outside the masks keep their values exactly.  The output is the
whole photo, the size of the input (as displayed: EXIF orientation applied on reading).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import defaults, io
from ..align import FaceAligner, crop_quad, paste_faces
from ..controls import Strength, check_strength
from ..errors import ImageError, NoFaceError, UsageError
from ..runtime import Shard
from ..session import Session
from ..synthesis import batches, transfer_batches
from .refine import check_invert, invert_record, refine_face
from .report import BackgroundWriter, JobReport, claim_outdir, fail, model_tag, overlapped, writer_threads
from .transfer import transfer_outputs

#: photos smaller than this a side are refused (dlib finds faces from about 40 px)
MIN_PHOTO_SIDE = 32

#: a face encoder for :func:`run_paste_back`: aligned crop RGB uint8 [S, S, 3] and a name for
#: messages -> W+ [1, n_latent, 512], or (W+, the model to render it with) after PTI
FaceEncoder = Callable[[np.ndarray, str], "torch.Tensor | tuple[torch.Tensor, Any]"]


def photo_faces(rgb: np.ndarray, name: str, aligner: Any, all_faces: bool = False) -> list[np.ndarray]:
    """FFHQ squares [4, 2] of the faces in photo ``rgb`` [H, W, 3], largest first (only the
    largest unless ``all_faces``).  ``aligner``: a :class:`blendgan.align.FaceAligner` or any
    object with its ``quads(rgb, all_faces)``.

    Raises :class:`ImageError` for a photo under :data:`MIN_PHOTO_SIDE` pixels a side and
    :class:`NoFaceError` when no face is found, both one line starting with ``name``."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_PHOTO_SIDE:
        raise ImageError(f"{name}: {w}x{h} px is too small to find a face in (at least {MIN_PHOTO_SIDE} px a side)")
    quads = list(aligner.quads(rgb, all_faces=all_faces))
    if not quads:
        raise NoFaceError(f"{name}: no face found")
    return quads


@torch.inference_mode()
def run_paste_back(model, input_dir: str | Path, style_dir: str | Path, outdir: str | Path, *,
                   all_faces: bool = False, add_weight_index: int | None = defaults.TRANSFER_ADD_WEIGHT_INDEX,
                   batch_size: int = defaults.BATCH_SIZE, fmt: str = defaults.FORMAT, overwrite: bool = False,
                   progress: bool = True, cache_dir: str | Path | None = None, shard: Shard = Shard(),
                   strength: Strength = defaults.STRENGTH, preserve_color: bool = False, aligner: Any = None,
                   encode: FaceEncoder | None = None, invert: str = defaults.INVERT_METHOD,
                   invert_steps: int | None = None) -> JobReport:
    """Write ``{photo}_v_{style}.{fmt}``: the photo with its face (``all_faces``: every face)
    stylized and pasted back, for every photo x style (names as :func:`blendgan.jobs.transfer_outputs`).

    ``aligner``: None for dlib's :class:`blendgan.align.FaceAligner` (loaded first: without the
    ``align`` extra this raises :class:`blendgan.errors.AlignmentUnavailable` before any work),
    or an object with its ``quads(rgb, all_faces)``.  ``encode``: how an aligned crop becomes
    W+ (default: pSp through a :class:`blendgan.Session`, with ``cache_dir``).  Every photo is
    searched for faces, also one that is already an aligned crop.  ``invert``/``invert_steps``
    refine each face's codes first (:mod:`blendgan.inversion`; 'pti' renders each face with
    its own tuned copy).  A photo that cannot be read,
    is too small or has no face is reported in one line and the job goes on; existing outputs
    are skipped unless ``overwrite``.  Work units are photos (a ``shard`` takes every
    ``world``-th); within a photo, batches of styles are fixed by the inputs, so a resumed run
    computes each image as a fresh one does.
    """
    check_strength(strength, model.n_latent)
    invert_steps = check_invert(invert, invert_steps)
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    photos, styles = io.input_images(input_dir, "face"), io.input_images(style_dir, "style")
    if encode is None and model.psp is None:
        raise UsageError("--paste-back encodes photos' faces: load the model with psp_encoder=...")
    if aligner is None:
        aligner = FaceAligner().load()
    session = Session(model, cache_dir=cache_dir)
    if encode is None:
        def encode(crop: np.ndarray, name: str) -> tuple[torch.Tensor, Any]:
            face = refine_face(session, session.face(crop, name), invert, invert_steps)
            return face.w_plus, session.model_for(face)
    outdir = io.prepare_outdir(outdir)
    claim_outdir(outdir, "paste-back", {"model": model_tag(model), "add_weight_index": add_weight_index,
                                        "all_faces": all_faces, "strength": strength,
                                        "preserve_color": preserve_color, **invert_record(invert, invert_steps)},
                 overwrite)
    report = JobReport()
    planned, clashes = transfer_outputs(photos, styles, outdir, fmt)
    for f, s, p in clashes if shard.rank == 0 else ():
        fail(report, f, ValueError(f"{f} with style {s}: output name {p.name} is shared with another "
                                   "photo/style pair; rename one of the inputs"))
    by_photo: dict[Path, list[tuple[Path, Path]]] = {f: [] for f in photos}
    for f, s, p in planned:
        by_photo[f].append((s, p))
    present: set[Path] = set()
    units: list[tuple[Path, list[tuple[Path, Path]]]] = []
    for k, f in enumerate(photos):
        if not shard.mine(k) or not by_photo[f]:
            continue
        done = {p for _, p in by_photo[f] if not overwrite and io.is_done(p)}
        report.skipped += [p for _, p in by_photo[f] if p in done]
        present |= done
        if len(done) < len(by_photo[f]):
            units.append((f, by_photo[f]))

    # each style of a photo with outputs to make is embedded once
    z_embed: dict[Path, torch.Tensor] = {}
    needed = list(dict.fromkeys(s for _, outs in units for s, _ in outs))
    for s in tqdm(needed, desc="styles", unit="img", disable=not progress or len(needed) < 2):
        try:
            z_embed[s] = session.style(s).z_embed
        except io.ImageError as exc:
            fail(report, s, exc)

    def made():
        """Per group of styles: the photo, its face squares, the group's (style, output) pairs and
        the started host copies of their stylized faces (in all [pairs * faces, S, S, 3], style-major)."""
        for f, outs in units:
            todo = [(s, p) for s, p in outs if p not in present and s in z_embed]
            if not todo:
                continue
            try:
                rgb = io.read_image(f)
                quads = photo_faces(rgb, str(f), aligner, all_faces)
                codes_of = [encode(crop_quad(rgb, q, model.size), f"{f} (face {i + 1})")
                            for i, q in enumerate(quads)]
                encoded = [c if isinstance(c, tuple) else (c, model) for c in codes_of]
                w_plus = torch.cat([w for w, _ in encoded])
                models = [m for _, m in encoded]
            except (io.ImageError, ValueError) as exc:  # unreadable, too small, no face, face off the photo
                fail(report, f, exc)
                bar.update(len(todo))
                continue
            n = len(quads)
            # groups of whole styles fixed by the inputs (all the photo's styles, not those left):
            # a group with an output to make is made whole, as in a fresh run
            per = max(1, batch_size // n)
            for sl in batches(len(outs), per):
                group = [(s, p) for s, p in outs[sl] if s in z_embed]
                if all(p in present for _, p in group):
                    continue
                codes = torch.cat([z_embed[s] for s, _ in group]).repeat_interleave(n, dim=0)
                kw = dict(add_weight_index=add_weight_index, batch_size=batch_size, strength=strength,
                          preserve_color=preserve_color)
                if all(m is model for m in models):
                    parts = [io.to_uint8_async(images) for _, images in
                             transfer_batches(model, w_plus.repeat(len(group), 1, 1), codes, **kw)]
                else:  # PTI: every face with its own tuned copy, then back in (style, face) order
                    per_face = [torch.cat([images for _, images in
                                           transfer_batches(models[i], w_plus[i:i + 1].expand(len(group), -1, -1),
                                                            codes[i::n], **kw)]) for i in range(n)]
                    parts = [io.to_uint8_async(torch.stack(per_face, dim=1).flatten(0, 1))]
                yield rgb, quads, group, parts

    total = sum(1 for _, outs in units for s, p in outs if s in z_embed and p not in present)
    with tqdm(total=total, desc="paste-back", unit="img", disable=not progress) as bar, \
            BackgroundWriter(report, writer_threads(model.device)) as writer:
        for rgb, quads, group, parts in overlapped(made(), model.device):
            faces = np.concatenate([part() for part in parts])
            n = len(quads)
            for j, (_, p) in enumerate(group):
                if p not in present:
                    writer.submit(p, _write_pasted, p, rgb, faces[j * n:(j + 1) * n], quads, fmt)
                    bar.update(1)
    return report


def _write_pasted(path: Path, photo: np.ndarray, faces: Sequence[np.ndarray], quads: Sequence[np.ndarray],
                  fmt: str) -> Path:
    """Paste ``faces`` into ``photo`` and write it atomically (on a writer thread)."""
    return io.write_image(path, paste_faces(photo, faces, quads), fmt)
