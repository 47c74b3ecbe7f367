"""``blendgan transfer``: every face of a folder with every style of another."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import defaults, io
from ..cache import LRU
from ..controls import Strength, check_strength
from ..model import BlendGAN
from ..runtime import Shard
from ..session import Session
from ..synthesis import batches, transfer_batches
from .refine import check_invert, invert_record, refine_face
from .report import BackgroundWriter, JobReport, claim_outdir, fail, model_tag, out_path, overlapped, writer_threads


#: style panels kept in memory during a transfer (more are read again when needed)
PANELS_KEPT = 64


def transfer_outputs(faces: Sequence[Path], styles: Sequence[Path], outdir: Path,
                     fmt: str) -> tuple[list[tuple[Path, Path, Path]], list[tuple[Path, Path, Path]]]:
    """Output file of every (face, style) pair: ``{face}_v_{style}.{fmt}`` with the names of
    :func:`blendgan.io.output_stems` -> ``(pairs, clashes)`` as ``(face, style, output)`` lists.
    Pairs whose names coincide ("x_v_y" with "z" and "x" with "y_v_z") are the ``clashes``:
    they cannot all be written."""
    face_names, style_names = io.output_stems(faces), io.output_stems(styles)
    planned = [(f, s, out_path(outdir, f"{face_names[f]}_v_{style_names[s]}", fmt)) for f in faces for s in styles]
    uses = Counter(p.name for _, _, p in planned)
    return [t for t in planned if uses[t[2].name] == 1], [t for t in planned if uses[t[2].name] > 1]


@torch.inference_mode()
def run_transfer(model: BlendGAN, input_dir: str | Path, style_dir: str | Path, outdir: str | Path,
                 add_weight_index: int | None = defaults.TRANSFER_ADD_WEIGHT_INDEX,
                 batch_size: int = defaults.BATCH_SIZE, fmt: str = defaults.FORMAT, overwrite: bool = False,
                 progress: bool = True, cache_dir: str | Path | None = None, shard: Shard = Shard(),
                 align: str = "never", strength: Strength = defaults.STRENGTH,
                 preserve_color: bool = False, invert: str = defaults.INVERT_METHOD,
                 invert_steps: int | None = None) -> JobReport:
    """Write ``{face}_v_{style}.{fmt}`` = [input | style | output] for every face x style
    (``strength`` and ``preserve_color``: see :mod:`blendgan.controls`; ``invert`` and
    ``invert_steps``: how faces are inverted, see :mod:`blendgan.inversion`).

    Each face is pSp-encoded once and each style embedded once (``cache_dir`` keeps the
    codes for later runs), both at the image's own size (both networks pool to 256
    internally); panels are resized to the model's size.  Work units are (face, batch of
    styles); a ``shard`` takes every ``world``-th unit.  ``align`` (see
    :class:`blendgan.align.FacePreparer`) aligns the input faces first.
    """
    check_strength(strength, model.n_latent)
    invert_steps = check_invert(invert, invert_steps)
    faces, styles = io.input_images(input_dir, "face"), io.input_images(style_dir, "style")
    session = Session(model, align=align, cache_dir=cache_dir)
    outdir = io.prepare_outdir(outdir)
    claim_outdir(outdir, "transfer", {"model": model_tag(model), "add_weight_index": add_weight_index,
                                      "strength": strength, "preserve_color": preserve_color, "align": align,
                                      **invert_record(invert, invert_steps)}, overwrite)
    report = JobReport()
    planned, clashes = transfer_outputs(faces, styles, outdir, fmt)
    for f, s, p in clashes if shard.rank == 0 else ():  # reported once, not by every process
        fail(report, f, ValueError(f"{f} with style {s}: output name {p.name} is shared with another "
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
        for k, sl in enumerate(batches(len(outs), batch_size), start=len(units)):
            if not shard.mine(k):  # another process's unit: its outputs are its business
                units.append(None)
                continue
            done = {p for _, p in outs[sl] if not overwrite and io.is_done(p)}
            report.skipped += [p for _, p in outs[sl] if p in done]
            present |= done
            units.append((f, outs[sl]) if len(done) < len(outs[sl]) else None)
    units = [u for u in units if u is not None]

    # Embed each needed style once and keep its code; its panel is kept while memory allows
    # (an LRU) and read again when needed later, a read that is protected like the first one.
    z_embed: dict[Path, torch.Tensor] = {}
    panels = LRU(PANELS_KEPT)
    needed = list(dict.fromkeys(s for _, outs in units for s, _ in outs))
    for s in tqdm(needed, desc="styles", unit="img", disable=not progress or len(needed) < 2):
        try:
            style = session.style(s)
        except io.ImageError as exc:
            fail(report, s, exc)
            continue
        z_embed[s] = style.z_embed
        panels.put(s, io.resize(style.image, model.size))

    def style_panel(path: Path) -> np.ndarray | None:
        """The style's panel, or None once it could not be read again (reported once)."""
        panel = panels.get(path)
        if panel is None and path in z_embed:
            try:
                panel = io.resize(io.read_image(path), model.size)
            except io.ImageError as exc:  # changed or removed since it was embedded
                fail(report, path, exc)
                del z_embed[path]
                return None
            panels.put(path, panel)
        return panel

    def made():
        """Per work unit: its outputs, the face panel and the started host copy of the images."""
        face: dict = {}
        for f, outs in units:
            outs = [(s, p) for s, p in outs if s in z_embed]
            if face.get("path") != f:  # units of one face are consecutive: encode it once
                face = {"path": f}
                try:
                    encoded = refine_face(session, session.face(f), invert, invert_steps)
                    face.update(panel=io.resize(encoded.image, model.size), w_plus=encoded.w_plus,
                                model=session.model_for(encoded))
                except io.ImageError as exc:
                    fail(report, f, exc)
            if "w_plus" not in face:
                bar.update(sum(p not in present for _, p in outs))
                continue
            if not outs:
                continue
            codes = torch.cat([z_embed[s] for s, _ in outs])
            for _, images in transfer_batches(face["model"], face["w_plus"].expand(len(outs), -1, -1), codes,
                                              add_weight_index=add_weight_index, batch_size=len(outs),
                                              strength=strength, preserve_color=preserve_color):
                yield outs, face["panel"], io.to_uint8_async(images)

    total = sum(1 for _, outs in units for s, p in outs if s in z_embed and p not in present)
    with tqdm(total=total, desc="transfer", unit="img", disable=not progress) as bar, \
            BackgroundWriter(report, writer_threads(model.device)) as writer:
        for outs, panel, images in overlapped(made(), model.device):
            for (s, p), out in zip(outs, images()):
                if p not in present:
                    style = style_panel(s)
                    if style is not None:
                        writer.submit(p, io.write_image, p, io.hstack([panel, style, out]), fmt)
                    bar.update(1)
    return report
