"""Drop-in replacements for the official scripts, with their exact flags and defaults.

``scripts/generate_image_pairs.py``, ``scripts/style_transfer_folder.py`` and
``scripts/gen_video.py`` call these.  Beyond the official flags they take ``--seed``,
``--device``, ``--batch-size``, ``--format``, ``--overwrite``, ``--quiet`` (and for the video
``--styles``, ``--fps``, ``--transition-steps``, ``--hold-frames``).  ``--size`` and
``--channel_multiplier`` are inferred from the checkpoint and only checked when given.
"""
from __future__ import annotations

import argparse
import sys

from . import cli
from . import pipeline as P
from .model import DEFAULT_TRUNCATION


def _parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--size", type=int, default=None,
                   help="output size; inferred from the checkpoint, checked when given (official default 1024)")
    p.add_argument("--ckpt", type=str, default="", help="path to BlendGAN checkpoint")
    p.add_argument("--channel_multiplier", type=int, default=None,
                   help="inferred from the checkpoint, checked when given (official default 2)")
    p.add_argument("--outdir", type=str, default="", help="output folder (default: current folder)")
    cli.add_runtime_flags(p, snake=True)
    return p


def _add_folder_flags(p: argparse.ArgumentParser, add_weight_index: int) -> None:
    cli.add_cache_flag(p, snake=True)
    cli.add_align_flag(p)
    p.add_argument("--psp_encoder_ckpt", dest="psp_encoder", type=str, default="",
                   help="path to psp_encoder checkpoint")
    p.add_argument("--style_img_path", type=str, default=None, required=True, help="path to style images")
    p.add_argument("--input_img_path", type=str, default=None, required=True, help="path to input images")
    p.add_argument("--add_weight_index", type=cli.index_arg, default=add_weight_index)


def _run(command, a: argparse.Namespace) -> int:
    """Fill the official flags' empty defaults with ours and run the ``blendgan`` command."""
    a.ckpt = a.ckpt or cli.DEFAULT_CKPT
    if hasattr(a, "psp_encoder"):
        a.psp_encoder = a.psp_encoder or cli.DEFAULT_PSP
    a.outdir = a.outdir or "."
    cli.setup_logging(a.quiet)
    return cli.run(command, a)


def generate_image_pairs(argv: list[str] | None = None) -> int:
    """``generate_image_pairs.py``: writes ``{i:06d}.jpg`` = [natural | stylized]."""
    p = _parser("Generate natural/stylized face pairs (latent- or reference-guided).")
    p.add_argument("--pics", type=int, default=P.PAIRS_PICS, help="N_PICS")
    p.add_argument("--truncation", type=float, default=DEFAULT_TRUNCATION)
    p.add_argument("--truncation_mean", type=int, default=P.DEFAULT_TRUNCATION_MEAN)
    p.add_argument("--style_img", type=str, default=None, help="path to style image")
    p.add_argument("--sample_zs", type=str, default=None)
    p.add_argument("--add_weight_index", type=cli.index_arg, default=P.PAIRS_ADD_WEIGHT_INDEX)
    # as the official script: a 'truncation' stored in the checkpoint overrides --truncation
    p.set_defaults(checkpoint_truncation_wins=True)
    return _run(cli.cmd_pairs, p.parse_args(argv))


def style_transfer_folder(argv: list[str] | None = None) -> int:
    """``style_transfer_folder.py``: writes ``{input}_v_{style}.jpg`` = [input | style | output]."""
    p = _parser("Style transfer of every input face with every style image.")
    _add_folder_flags(p, P.TRANSFER_ADD_WEIGHT_INDEX)
    return _run(cli.cmd_transfer, p.parse_args(argv))


def gen_video(argv: list[str] | None = None) -> int:
    """``gen_video.py``: writes ``{input}.mp4`` = [input | sliding style window | output]."""
    p = _parser("Style interpolation video of each input face.")
    _add_folder_flags(p, P.VIDEO_ADD_WEIGHT_INDEX)
    cli.add_video_flags(p, snake=True)
    return _run(cli.cmd_video, p.parse_args(argv))


def entry(name: str) -> None:
    """Run drop-in script ``name`` with ``sys.argv`` and exit with its status."""
    sys.exit({"generate_image_pairs": generate_image_pairs, "style_transfer_folder": style_transfer_folder,
              "gen_video": gen_video}[name]())
