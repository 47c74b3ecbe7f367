"""``blendgan web``: serve the demo page (:mod:`blendgan.web`)."""
from __future__ import annotations

import argparse

from .. import defaults
from ..errors import UsageError
from ..runtime import configure_backends
from . import arguments as A
from .base import Command

class WebCommand(Command):
    """Serve until Ctrl-C; exit status 0, or a one-line error (status 2)."""
    name = "web"
    help = "local web demo in the browser (needs blendgan[web])"
    description = "Serve the BlendGAN demo page locally (Gradio)."

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default=defaults.WEB_HOST,
                       help="address to listen on (default %(default)s: this machine only)")
        p.add_argument("--port", type=int, default=defaults.WEB_PORT, help="port (default %(default)s)")
        p.add_argument("--ckpt", default=defaults.CKPT, help="BlendGAN checkpoint (default %(default)s)")
        p.add_argument("--psp-encoder", "--psp_encoder_ckpt", dest="psp_encoder", default=defaults.PSP_ENCODER,
                       help="pSp encoder checkpoint, or 'none' for random faces only (default %(default)s)")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        A.add_offline_flag(p)

    def run(self, a: argparse.Namespace) -> int:
        from ..web import launch
        psp = None if str(a.psp_encoder).lower() == "none" else a.psp_encoder
        configure_backends("fp32")  # the demo computes in strict float32, as the other commands by default
        try:
            launch(a.ckpt, psp, host=a.host, port=a.port, device=a.device, offline=a.offline)
        except OSError as exc:  # port taken, address not available
            raise UsageError(f"cannot serve on {a.host}:{a.port}: {str(exc).splitlines()[0]}") from None
        return 0
