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
    p.add_argument("--psp_encoder_ckpt", type=str, default="", help="path to psp_encoder checkpoint")
    p.add_argument("--style_img_path", type=str, default=None, required=True, help="path to style images")
    p.add_argument("--input_img_path", type=str, default=None, required=True, help="path to input images")
    p.add_argument("--add_weight_index", type=cli.index_arg, default=add_weight_index)


def _ckpt(value: str, default: str) -> str:
    return value or default


def generate_image_pairs(argv: list[str] | None = None) -> int:
    """``generate_image_pairs.py``: writes ``{i:06d}.jpg`` = [natural | stylized]."""
    p = _parser("Generate natural/stylized face pairs (latent- or reference-guided).")
    p.add_argument("--pics", type=int, default=P.PAIRS_PICS, help="N_PICS")
    p.add_argument("--truncation", type=float, default=DEFAULT_TRUNCATION)
    p.add_argument("--truncation_mean", type=int, default=P.DEFAULT_TRUNCATION_MEAN)
    p.add_argument("--style_img", type=str, default=None, help="path to style image")
    p.add_argument("--sample_zs", type=str, default=None)
    p.add_argument("--add_weight_index", type=cli.index_arg, default=P.PAIRS_ADD_WEIGHT_INDEX)
    a = p.parse_args(argv)
    cli.setup_logging(a.quiet)

    def job(a):
        outdir = a.outdir or "."
        with cli.distributed(a.device) as (shard, device):
            model = cli.open_model(_ckpt(a.ckpt, cli.DEFAULT_CKPT), None, device, a.size, a.channel_multiplier,
                                   a.precision)
            truncation = a.truncation
            if model.stored_truncation is not None:  # as the official script: the checkpoint's value wins
                truncation = model.stored_truncation
                cli.log.info("truncation %s (from the checkpoint)", truncation)
            zs = P.load_sample_zs(a.sample_zs, a.pics, model.generator.style_dim) if a.sample_zs else None
            report = P.run_pairs(model, outdir, pics=a.pics, style_image=a.style_img, zs=zs, truncation=truncation,
                                 truncation_mean=a.truncation_mean, add_weight_index=a.add_weight_index,
                                 seed=a.seed, batch_size=a.batch_size, fmt=a.format, overwrite=a.overwrite,
                                 progress=not a.quiet and shard.rank == 0, shard=shard)
        return cli.finish(report, outdir)
    return cli.run(job, a)


def style_transfer_folder(argv: list[str] | None = None) -> int:
    """``style_transfer_folder.py``: writes ``{input}_v_{style}.jpg`` = [input | style | output]."""
    p = _parser("Style transfer of every input face with every style image.")
    _add_folder_flags(p, P.TRANSFER_ADD_WEIGHT_INDEX)
    a = p.parse_args(argv)
    cli.setup_logging(a.quiet)

    def job(a):
        outdir = a.outdir or "."
        with cli.distributed(a.device) as (shard, device):
            model = cli.open_model(_ckpt(a.ckpt, cli.DEFAULT_CKPT), _ckpt(a.psp_encoder_ckpt, cli.DEFAULT_PSP),
                                   device, a.size, a.channel_multiplier, a.precision)
            report = P.run_transfer(model, a.input_img_path, a.style_img_path, outdir,
                                    add_weight_index=a.add_weight_index, batch_size=a.batch_size, fmt=a.format,
                                    overwrite=a.overwrite, progress=not a.quiet and shard.rank == 0,
                                    cache_dir=a.cache_dir, shard=shard, align=a.align)
        return cli.finish(report, outdir)
    return cli.run(job, a)


def gen_video(argv: list[str] | None = None) -> int:
    """``gen_video.py``: writes ``{input}.mp4`` = [input | sliding style window | output]."""
    p = _parser("Style interpolation video of each input face.")
    _add_folder_flags(p, P.VIDEO_ADD_WEIGHT_INDEX)
    cli.add_video_flags(p, snake=True)
    a = p.parse_args(argv)
    cli.setup_logging(a.quiet)

    def job(a):
        outdir = a.outdir or "."
        with cli.distributed(a.device) as (shard, device):
            model = cli.open_model(_ckpt(a.ckpt, cli.DEFAULT_CKPT), _ckpt(a.psp_encoder_ckpt, cli.DEFAULT_PSP),
                                   device, a.size, a.channel_multiplier, a.precision)
            report = P.run_video(model, a.input_img_path, a.style_img_path, outdir,
                                 add_weight_index=a.add_weight_index, n_styles=a.styles, seed=a.seed, fps=a.fps,
                                 transition_steps=a.transition_steps, hold_frames=a.hold_frames,
                                 batch_size=a.batch_size, overwrite=a.overwrite,
                                 progress=not a.quiet and shard.rank == 0, cache_dir=a.cache_dir, shard=shard,
                                 align=a.align)
        return cli.finish(report, outdir)
    return cli.run(job, a)


def entry(name: str) -> None:
    """Run drop-in script ``name`` with ``sys.argv`` and exit with its status."""
    sys.exit({"generate_image_pairs": generate_image_pairs, "style_transfer_folder": style_transfer_folder,
              "gen_video": gen_video}[name]())
