"""``blendgan align``: FFHQ-style face crops of photos (:func:`blendgan.jobs.align_path`)."""
from __future__ import annotations

import argparse

from .. import defaults, io
from ..align import FaceAligner
from ..jobs import align_path
from .base import Command, finish


def size_arg(value: str) -> int:
    size = int(value)
    if size < 16:
        raise argparse.ArgumentTypeError(f"size must be >= 16, got {size}")
    return size


class AlignCommand(Command):
    """Exit status: 0 all done, 1 some images failed (no face, unreadable), 2 unusable setup."""
    name = "align"
    help = "FFHQ-style face crops of photos (needs blendgan[align])"
    description = "Find faces (dlib) and crop each like FFHQ: eyes level, fixed position and scale."

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("input", metavar="IN_DIR_OR_FILE", help="photo or folder of photos")
        p.add_argument("outdir", metavar="OUT_DIR", help="output folder")
        p.add_argument("--size", type=size_arg, default=defaults.ALIGN_SIZE,
                       help="output side in pixels (default %(default)s)")
        p.add_argument("--all-faces", action="store_true",
                       help="one crop per face ({stem}.png, {stem}_1.png, ... largest first); default: the largest")
        p.add_argument("--format", choices=io.FORMATS, default="png", help="output format (default %(default)s)")
        p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
        p.add_argument("--quiet", action="store_true", help="no progress bar or info messages")

    def run(self, a: argparse.Namespace) -> int:
        aligner = FaceAligner().load()
        report = align_path(a.input, a.outdir, size=a.size, all_faces=a.all_faces, fmt=a.format,
                            overwrite=a.overwrite, progress=not a.quiet, aligner=aligner)
        return finish(report, a.outdir)
