"""``blendgan info`` (versions, devices, op backends, weights found) and ``blendgan download``."""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

from .. import __version__, defaults
from ..checkpoint import summarize
from ..errors import CheckpointError, printable
from .base import Command


class InfoCommand(Command):
    name = "info"
    help = "versions, device, op backends, checkpoints found"

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("--weights-dir", default=defaults.WEIGHTS_DIR,
                       help="where to look for checkpoints (default %(default)s)")
        p.add_argument("--build-ops", action="store_true",
                       help="build the compiled ops now: the C++ Winograd transforms, and the CUDA ops when a "
                            "GPU is present")

    def run(self, a: argparse.Namespace) -> int:
        import cv2
        import numpy
        import torch
        try:  # only reported here: a torchvision built for another torch must not stop `info`
            import torchvision
            vision = torchvision.__version__
        except Exception as exc:  # noqa: BLE001 (its C++ ops fail to register in many ways)
            vision = f"unusable ({type(exc).__name__})"

        from ..io import video_backend
        from ..ops import backend_info, cpu_backend_info
        from ..runtime import resolve_device
        print(f"blendgan {__version__}  python {platform.python_version()}  torch {torch.__version__}  "
              f"torchvision {vision}  numpy {numpy.__version__}  opencv {cv2.__version__}")
        cuda = (f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s): "
                + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
                if torch.cuda.is_available() else f"no CUDA device (torch built with CUDA {torch.version.cuda})")
        print(f"device: {resolve_device('auto')}  ({cuda}); CPU threads {torch.get_num_threads()}")
        for name, state in backend_info(build_now=a.build_ops).items():
            print(f"op {name}: {state}")
        print("3x3 convolutions in CPU float32 inference: Winograd F(4x4, 3x3) (blendgan.ops.winograd), "
              f"transforms: {cpu_backend_info(build_now=a.build_ops)}")
        print(f"video writer: {video_backend()}")
        for path, kind in ((Path(a.weights_dir) / "blendgan.pt", "BlendGAN generator"),
                           (Path(a.weights_dir) / "psp_encoder.pt", "pSp encoder")):
            if not path.exists():
                print(printable(f"{path}: not found (run `blendgan download --dir {a.weights_dir}`)"))
                continue
            try:
                summary = summarize(path)
            except CheckpointError as exc:
                print(f"{printable(str(exc))} ")
                continue
            wrong = "" if summary.startswith(kind) else f"  <- WRONG FILE: this name should hold the {kind}"
            print(printable(f"{path}: {summary}{wrong}"))
        return 0


class DownloadCommand(Command):
    name = "download"
    help = "fetch and validate the official weights"

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", default=defaults.WEIGHTS_DIR, help="destination folder (default %(default)s)")
        p.add_argument("--files", nargs="+", default=["blendgan", "psp_encoder"],
                       choices=["blendgan", "psp_encoder", "style_encoder"], help="which files (default: %(default)s)")
        p.add_argument("--overwrite", action="store_true", help="fetch again even if present and valid")
        p.add_argument("--from", dest="source", metavar="DIR_OR_URL", default=None,
                       help="a mirror to take the files from instead of Google Drive: a folder or an http(s) URL "
                            f"holding them under their names (default: ${defaults.ENV_MIRROR} when set)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(self, a: argparse.Namespace) -> int:
        import os

        from ..download import download
        source = a.source or os.environ.get(defaults.ENV_MIRROR) or None
        for path in download(a.dir, names=tuple(a.files), overwrite=a.overwrite, source=source,
                             progress=not a.quiet):
            print(printable(str(path)))
        return 0
