"""``blendgan export``: the networks as ONNX graphs (:mod:`blendgan.export`)."""
from __future__ import annotations

import argparse
import logging

from .. import defaults, io
from ..export import GRAPH_NAMES
from . import arguments as A
from .base import Command

log = logging.getLogger("blendgan")


class ExportCommand(Command):
    name = "export"
    help = "ONNX graphs of the networks, to run with onnxruntime (needs blendgan[export])"
    description = ("Write style_encoder.onnx, psp_encoder.onnx, mapping.onnx, synthesis.onnx (standard ONNX "
                   "operators, dynamic batch) and blendgan.json into OUTDIR; existing files are replaced.")

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("--ckpt", default=defaults.CKPT, help="BlendGAN checkpoint (default %(default)s)")
        p.add_argument("--psp-encoder", "--psp_encoder_ckpt", dest="psp_encoder", default=defaults.PSP_ENCODER,
                       help="pSp encoder checkpoint, or 'none' to export without psp_encoder.onnx "
                            "(default %(default)s)")
        p.add_argument("--outdir", default=defaults.EXPORT_DIR, help="output folder (default %(default)s)")
        p.add_argument("--graphs", nargs="+", choices=GRAPH_NAMES, default=None,
                       help="export only these graphs (default: all)")
        p.add_argument("--opset", type=A.int_at_least(defaults.ONNX_OPSET), default=defaults.ONNX_OPSET,
                       help="ONNX opset (default %(default)s)")
        A.add_offline_flag(p)
        p.add_argument("--quiet", action="store_true", help="errors only")

    def run(self, a: argparse.Namespace) -> int:
        from ..errors import UsageError
        from ..export import check_dependencies, export_onnx
        from .jobs import open_model
        psp = None if str(a.psp_encoder).lower() == "none" else a.psp_encoder
        if a.graphs and "psp_encoder" in a.graphs and psp is None:
            raise UsageError("--graphs psp_encoder needs --psp-encoder")
        check_dependencies()  # before the weights load
        io.prepare_outdir(a.outdir)
        model = open_model(a.ckpt, psp, "cpu", offline=a.offline)
        for path in export_onnx(model, a.outdir, names=tuple(a.graphs) if a.graphs else None, opset=a.opset):
            print(path)
        return 0
