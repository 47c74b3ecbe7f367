"""``blendgan align``: FFHQ-aligned crops of every face photo in a folder."""
from __future__ import annotations

import os
from pathlib import Path

from tqdm.auto import tqdm

from .. import defaults, io
from ..align import FaceAligner
from ..errors import NoFaceError, UsageError
from .report import JobReport, fail, write_failed


def output_names(stem: str, count: int, fmt: str) -> list[str]:
    """``{stem}.{fmt}``, ``{stem}_1.{fmt}``, ... for ``count`` faces (largest first)."""
    return [io.fit_name(stem, f".{fmt}")] + [io.fit_name(f"{stem}_{i}", f".{fmt}") for i in range(1, count)]


def align_path(input_path: str | os.PathLike, out_dir: str | os.PathLike, size: int = defaults.ALIGN_SIZE,
               all_faces: bool = False, fmt: str = "png", overwrite: bool = False, progress: bool = True,
               aligner: FaceAligner | None = None):
    """Align an image or every image of a folder into ``out_dir`` -> :class:`blendgan.jobs.JobReport`.

    Writes ``{stem}.{fmt}`` for the largest face (``all_faces``: then ``{stem}_1``, ...,
    smaller faces).  Images without a face or that cannot be read are reported in one line
    and the batch goes on.  An image whose ``{stem}.{fmt}`` exists is skipped unless
    ``overwrite`` (it is written last, so its presence means the image was finished).
    """
    if fmt not in io.FORMATS:
        raise UsageError(f"format must be one of {io.FORMATS}, got {fmt!r}")
    if size < 1:
        raise UsageError(f"size must be >= 1, got {size}")
    out_dir = Path(out_dir)
    images = io.list_images(input_path)
    aligner = (aligner or FaceAligner()).load()
    io.prepare_outdir(out_dir)
    report = JobReport()
    stems = io.output_stems(images)  # a.jpg and a.png -> a.jpg.png and a.png.png
    for path in tqdm(images, desc="align", unit="img", disable=not progress):
        stem = stems[path]
        first = out_dir / output_names(stem, 1, fmt)[0]
        if io.same_file(first, path):
            fail(report, path, ValueError(f"{path}: output would overwrite the input; choose another OUT_DIR"))
            continue
        if io.is_done(first) and not overwrite:
            report.skipped.append(first)
            k = 1
            while io.is_done(extra := out_dir / output_names(stem, k + 1, fmt)[k]):
                report.skipped.append(extra)
                k += 1
            continue
        try:
            rgb = io.read_image(path)
            crops = aligner.align(rgb, size, all_faces=all_faces)
            if not crops:
                raise NoFaceError(f"{path}: no face found")
        except (io.ImageError, ValueError) as exc:
            fail(report, path, exc)
            continue
        outs = [out_dir / name for name in output_names(stem, len(crops), fmt)]
        try:
            for out, crop in list(zip(outs, crops))[1:] + [(outs[0], crops[0])]:  # the main one last
                io.write_image(out, crop, fmt)
        except OSError as exc:
            write_failed(report, out, exc)
            continue
        report.written.extend(outs)
    return report
