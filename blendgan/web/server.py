"""Serving the demo page: ``launch`` loads the checkpoints and serves on a local address."""
from __future__ import annotations

import logging
import os

import torch

from .. import defaults
from ..model import BlendGAN
from .page import build_app, import_gradio, page_assets
from .uploads import MAX_UPLOAD_BYTES

log = logging.getLogger("blendgan")

DEFAULT_HOST = defaults.WEB_HOST
DEFAULT_PORT = defaults.WEB_PORT


def launch_kwargs(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, max_file_size: int = MAX_UPLOAD_BYTES) -> dict:
    """The ``Blocks.launch`` arguments of the demo: local only, no share link, no SSR (which
    needs Node), no MCP server, no monitoring, no run history, uploads capped at ``max_file_size`` bytes;
    the page's theme (system fonts), CSS and script (:func:`blendgan.web.page.page_assets`)."""
    return dict(**page_assets(), server_name=host, server_port=int(port), share=False, ssr_mode=False, mcp_server=False,
                enable_monitoring=False, pwa=False, run_history=False, max_file_size=int(max_file_size),
                show_error=False, inbrowser=False)


def launch(ckpt: str | os.PathLike = defaults.CKPT, psp_encoder: str | os.PathLike | None = defaults.PSP_ENCODER,
           host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, device: str | torch.device | None = "auto", *,
           block: bool = True, quiet: bool = False, offline: bool | None = None, **build_kwargs):
    """Load the checkpoints and serve the demo on ``http://host:port``.

    ``block``: serve until Ctrl-C (the CLI); False returns the running ``gradio.Blocks``
    (stop it with ``demo.close(); demo.studio.close()``).  ``psp_encoder=None`` serves random faces only.  Raises
    :class:`blendgan.errors.DependencyError` without Gradio and ``blendgan.CheckpointError`` for a bad
    checkpoint.  Missing default weights are downloaded first unless ``offline`` (see
    ``BlendGAN.from_pretrained``).  Analytics are disabled on the Blocks itself; no environment variable is
    read or set.
    """
    import_gradio()  # fail before loading the weights
    model = BlendGAN.from_pretrained(ckpt, psp_encoder=psp_encoder, device=device, offline=offline)
    demo = build_app(model, **build_kwargs)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the demo", host)
    try:
        demo.launch(prevent_thread_lock=not block, quiet=quiet, **launch_kwargs(host, port))
    finally:
        if block:
            demo.studio.close()
    return demo
