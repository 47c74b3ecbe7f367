"""``blendgan sheet``: a contact sheet of faces × styles, or a sweep of one control (:mod:`blendgan.jobs.sheet`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import defaults
from ..controls import Controls
from ..jobs.sheet import CELL_SIZE, SWEEPABLE, run_sheet
from ..runtime import process_group
from . import arguments as A
from .base import Command, finish
from .jobs import controls, open_model

ON_OFF = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}


def sweep_arg(value: str) -> tuple[str, list]:
    """``--sweep NAME=V1,V2,...``: a control of :data:`SWEEPABLE` (dashes or underscores) and its values."""
    name, sep, values = value.partition("=")
    name = name.strip().replace("-", "_").replace("preserve_colour", "preserve_color")
    if not sep or name not in SWEEPABLE or not values:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... with NAME one of "
                                         f"{', '.join(n.replace('_', '-') for n in SWEEPABLE)}, got {value!r}")
    items = [v.strip() for v in values.split(",")]
    if name == "strength":
        return name, [A.strength_arg(v) for v in items]
    if name == "add_weight_index":
        return name, [A.index_arg(v) for v in items]
    if any(v.lower() not in ON_OFF for v in items):
        raise argparse.ArgumentTypeError(f"preserve-color takes on/off values, got {values!r}")
    return name, [ON_OFF[v.lower()] for v in items]


class SheetCommand(Command):
    name = "sheet"
    help = "contact sheet of faces x styles, or a sweep of one control across values"
    description = ("Write one image comparing results: every face (rows) with every style (columns), or with "
                   "--sweep one control across values, e.g. --sweep strength=0,0.5,1,1.5 or "
                   "--sweep add-weight-index=4,6,8.")

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        A.add_model_flags(p, psp=True)
        p.add_argument("--input", "--input-img-path", dest="input_img_path", required=True,
                       help="face image or folder")
        p.add_argument("--style", "--style-img-path", dest="style_img_path", required=True,
                       help="style image or folder")
        p.add_argument("--out", default="outputs/sheet.jpg", help="the sheet, .jpg or .png, rewritten by each run (default %(default)s)")
        p.add_argument("--sweep", type=sweep_arg, default=None, metavar="NAME=V1,V2,...",
                       help="vary one control: strength, add-weight-index or preserve-color (on/off)")
        p.add_argument("--cell-size", type=A.int_at_least(16), default=CELL_SIZE,
                       help="side of each cell in pixels (default %(default)s)")
        A.add_cache_flag(p)
        A.add_align_flag(p)
        A.add_index_flag(p, defaults.TRANSFER_ADD_WEIGHT_INDEX)
        A.add_control_flags(p)
        A.add_runtime_flags(p, seed=False, images=False, resumable=False)

    def run(self, a: argparse.Namespace) -> int:
        out = Path(a.out)
        a.outdir = str(out.parent)
        A.check_paths(a)
        with process_group(a.device) as env:
            model = open_model(a.ckpt, a.psp_encoder, env.device, a.size, a.channel_multiplier, a.precision,
                               a.compile, a.offline)
            setting = Controls(add_weight_index=a.add_weight_index, **controls(a))
            report = run_sheet(model, a.input_img_path, a.style_img_path, out, setting=setting, sweep=a.sweep,
                               align=a.align, cache_dir=a.cache_dir, cell_size=a.cell_size,
                               batch_size=a.batch_size, progress=not a.quiet)
        return finish(report, out)
