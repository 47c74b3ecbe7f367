"""``blendgan sheet``: the comparisons artists make by hand, in one image.

* a **contact sheet**: faces × styles, the style images on the first row, the faces in the
  first column, each cell the face stylized with the style;
* a **sweep** of one control across values (strength 0, 0.5, 1, 1.5; add_weight_index 4, 6,
  8; preserve_color off, on): one row per face × style, [face | style | one result per value]
  under a header naming the values.

Every face and style is encoded once (:class:`blendgan.Session`); the cells are rendered in
batches.  Inputs that cannot be read are reported and left out; the sheet is written
atomically.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from .. import defaults, io
from ..controls import Controls, check_strength
from ..errors import UsageError
from ..model import BlendGAN
from ..session import Face, Session, Style
from ..synthesis import batches
from .report import JobReport, fail

#: the controls a sweep can vary
SWEEPABLE = ("strength", "add_weight_index", "preserve_color")
CELL_SIZE = 256       # default side of a sheet cell in pixels
GAP = 4               # white pixels between cells
HEADER = 36           # height of the header row of a sweep


def sweep_settings(base: Controls, name: str, values: Sequence) -> list[Controls]:
    """``base`` with control ``name`` set to each of ``values`` in turn (checked)."""
    if name not in SWEEPABLE:
        raise UsageError(f"cannot sweep {name!r}; choose one of {', '.join(SWEEPABLE)}")
    if not values:
        raise UsageError(f"a sweep of {name} needs at least one value")
    if name == "strength":
        for v in values:
            check_strength(v)
    return [dataclasses.replace(base, **{name: v}) for v in values]


def thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    """The centred square of RGB ``image`` [H, W, 3] at ``side`` x ``side`` (area filter when shrinking)."""
    h, w = image.shape[:2]
    s = min(h, w)
    square = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    interp = cv2.INTER_AREA if s > side else cv2.INTER_LINEAR
    return square if s == side else cv2.resize(square, (side, side), interpolation=interp)


def tile(rows: Sequence[Sequence[np.ndarray | None]], side: int, gap: int = GAP,
         header: Sequence[str] | None = None) -> np.ndarray:
    """RGB uint8 grid of ``side``-px cells (None: a blank cell) with white gaps, under an
    optional header row of labels, one per column."""
    n_cols = max(len(r) for r in rows)
    top = HEADER if header else 0
    grid = np.full((top + len(rows) * (side + gap) + gap, n_cols * (side + gap) + gap, 3), 255, np.uint8)
    for j, label in enumerate(header or ()):
        x = gap + j * (side + gap)
        scale = min(0.6, 0.95 * side / max(1, cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0]))
        cv2.putText(grid, label, (x + 2, top - 12), cv2.FONT_HERSHEY_SIMPLEX, scale, (30, 30, 30), 1, cv2.LINE_AA)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            if cell is not None:
                y, x = top + gap + i * (side + gap), gap + j * (side + gap)
                grid[y:y + side, x:x + side] = thumbnail(cell, side)
    return grid


def stylize_all(model: BlendGAN, face: Face, styles: Sequence[Style], setting: Controls,
                batch_size: int = defaults.BATCH_SIZE) -> list[np.ndarray]:
    """``face`` stylized by each of ``styles`` under one ``setting``, in batches: RGB uint8 [S, S, 3] each."""
    out: list[np.ndarray] = []
    for sl in batches(len(styles), batch_size):
        codes = torch.cat([s.z_embed for s in styles[sl]])
        images = model.synthesize(w_plus=face.w_plus.expand(codes.shape[0], -1, -1), z_embed=codes,
                                  add_weight_index=setting.add_weight_index, strength=setting.strength,
                                  preserve_color=setting.preserve_color)
        out.extend(io.to_uint8(images))
    return out


def contact_sheet(model: BlendGAN, faces: Sequence[Face], styles: Sequence[Style], setting: Controls = Controls(),
                  *, cell_size: int = CELL_SIZE, batch_size: int = defaults.BATCH_SIZE) -> np.ndarray:
    """Faces × styles in one RGB uint8 image: the styles on the first row, the faces in the first
    column, each cell the face (row) stylized with the style (column) under ``setting``."""
    rows: list[list[np.ndarray | None]] = [[None] + [s.image for s in styles]]
    for face in faces:
        rows.append([face.image] + stylize_all(model, face, styles, setting, batch_size))
    return tile(rows, cell_size)


def sweep_sheet(model: BlendGAN, faces: Sequence[Face], styles: Sequence[Style], settings: Sequence[Controls],
                name: str, *, cell_size: int = CELL_SIZE, batch_size: int = defaults.BATCH_SIZE) -> np.ndarray:
    """One control across values (``settings`` from :func:`sweep_settings` for control ``name``):
    a row per face × style, [face | style | the result under each setting], under a header."""
    rows = []
    for face in faces:
        cells = [stylize_all(model, face, styles, setting, batch_size) for setting in settings]
        for k, style in enumerate(styles):
            rows.append([face.image, style.image] + [column[k] for column in cells])
    header = ["face", "style"] + [setting.describe(name) for setting in settings]
    return tile(rows, cell_size, header=header)


@torch.inference_mode()
def run_sheet(model: BlendGAN, input_dir: str | Path, style_dir: str | Path, out_path: str | Path, *,
              setting: Controls = Controls(), sweep: tuple[str, Sequence] | None = None, align: str = "never",
              cache_dir: str | Path | None = None, cell_size: int = CELL_SIZE,
              batch_size: int = defaults.BATCH_SIZE, progress: bool = True) -> JobReport:
    """Write a contact sheet of the faces × styles of two folders (or, with ``sweep`` =
    ``(control, values)``, a sweep of that control from ``setting``) to ``out_path`` (.jpg or
    .png).  Faces are aligned by ``align``; unreadable inputs are reported and left out."""
    out_path = Path(out_path)
    fmt = out_path.suffix.lower().lstrip(".").replace("jpeg", "jpg")
    if fmt not in io.FORMATS:
        raise UsageError(f"{out_path}: the sheet must be a .jpg or .png file")
    if cell_size < 16:
        raise UsageError(f"cell size must be >= 16, got {cell_size}")
    settings = sweep_settings(setting, *sweep) if sweep else [setting]
    for s in settings:
        check_strength(s.strength, model.n_latent)
        model.face_weights(s.add_weight_index)
    session = Session(model, align=align, cache_dir=cache_dir)
    report = JobReport()
    paths = io.input_images(input_dir, "face"), io.input_images(style_dir, "style")
    encoded: tuple[list, list] = ([], [])
    for kind, found, out in zip(("face", "style"), paths, encoded):
        for path in tqdm(found, desc=f"{kind}s", unit="img", disable=not progress or len(found) < 2):
            try:
                out.append(session.face(path) if kind == "face" else session.style(path))
            except io.ImageError as exc:
                fail(report, path, exc)
    faces, styles = encoded
    if not faces or not styles:
        raise UsageError(f"no {'face' if not faces else 'style'} could be read; nothing to show")
    if sweep:
        sheet = sweep_sheet(model, faces, styles, settings, sweep[0], cell_size=cell_size, batch_size=batch_size)
    else:
        sheet = contact_sheet(model, faces, styles, setting, cell_size=cell_size, batch_size=batch_size)
    io.prepare_outdir(out_path.parent)
    report.written.append(io.write_image(out_path, sheet, fmt))
    return report
