"""The drop-in replacements for the official scripts, with their exact flags and defaults.

``scripts/generate_image_pairs.py``, ``scripts/style_transfer_folder.py`` and
``scripts/gen_video.py`` call these.  Beyond the official flags they take ``--device``,
``--batch-size``, ``--overwrite``, ``--quiet``, ``--seed`` (pairs, video), ``--format``
(pairs, transfer) and for the video ``--styles``, ``--fps``, ``--transition-steps``,
``--hold-frames``.  ``--size`` and ``--channel_multiplier`` are inferred from the checkpoint
and only checked when given.  Abbreviated flags resolve to the official flags first, as they
did in the official scripts (``--style`` is ``--style_img_path``, not ``--styles``).
"""
from __future__ import annotations

import argparse
import sys

from .. import defaults
from . import arguments as A
from .base import quiet_output, run, setup_logging, sigterm_as_interrupt
from .jobs import PairsCommand, TransferCommand, VideoCommand


class OfficialFirstParser(argparse.ArgumentParser):
    """An argument parser where an abbreviation that matches an official flag means that
    flag, even when one of our added flags shares the prefix."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.official: set[str] = set()

    def official_argument(self, *names: str, **kwargs):
        self.official.update(names)
        return self.add_argument(*names, **kwargs)

    def _get_option_tuples(self, option_string):
        matches = super()._get_option_tuples(option_string)
        official = [m for m in matches if m[1] in self.official]
        return official if len(official) == 1 else matches


def _parser(description: str, seed: bool = True, images: bool = True) -> OfficialFirstParser:
    p = OfficialFirstParser(description=description)
    p.official_argument("--size", type=int, default=None,
                        help="output size; inferred from the checkpoint, checked when given (official default 1024)")
    p.official_argument("--ckpt", type=str, default="", help=f"path to BlendGAN checkpoint (default {defaults.CKPT})")
    p.official_argument("--channel_multiplier", type=int, default=None,
                        help="inferred from the checkpoint, checked when given (official default 2)")
    p.official_argument("--outdir", type=str, default="", help="output folder (default: current folder)")
    A.add_runtime_flags(p, snake=True, seed=seed, images=images)
    A.add_offline_flag(p)
    return p


def _add_folder_flags(p: argparse.ArgumentParser, add_weight_index: int) -> None:
    A.add_cache_flag(p, snake=True)
    A.add_align_flag(p)
    p.official_argument("--psp_encoder_ckpt", dest="psp_encoder", type=str, default="",
                        help=f"path to psp_encoder checkpoint (default {defaults.PSP_ENCODER})")
    p.official_argument("--style_img_path", type=str, default=None, required=True,
                        help="style image or folder of style images")
    p.official_argument("--input_img_path", type=str, default=None, required=True,
                        help="face image or folder of face images")
    p.official_argument("--add_weight_index", type=A.index_arg, default=add_weight_index,
                        help="first N W+ layers stay pure face; 'none' = learned weights only (default %(default)s)")


def _run(command, a: argparse.Namespace) -> int:
    """Fill the official flags' empty defaults with ours and run the ``blendgan`` command."""
    a.ckpt = a.ckpt or defaults.CKPT
    if hasattr(a, "psp_encoder"):
        a.psp_encoder = a.psp_encoder or defaults.PSP_ENCODER
    a.outdir = a.outdir or "."
    setup_logging(a.quiet)
    with sigterm_as_interrupt(), quiet_output(a.quiet):
        return run(command, a)


def pairs_parser() -> OfficialFirstParser:
    """The flags of ``generate_image_pairs.py``."""
    p = _parser("Generate natural/stylized face pairs (latent- or reference-guided).")
    p.official_argument("--pics", type=A.int_at_least(1), default=defaults.PAIRS_PICS,
                        help="number of pairs (default %(default)s)")
    p.official_argument("--truncation", type=A.finite_float, default=defaults.TRUNCATION,
                        help="face truncation psi; a truncation stored in the checkpoint wins, as in the "
                             "official script (default %(default)s)")
    p.official_argument("--truncation_mean", type=A.int_at_least(1), default=defaults.TRUNCATION_MEAN,
                        help="samples for the mean w when the checkpoint has none (default %(default)s)")
    p.official_argument("--style_img", type=str, default=None,
                        help="reference style image; omitted: a random style code")
    p.official_argument("--sample_zs", type=str, default=None,
                        help="torch.save'd face codes [P, 512] to use instead of random ones")
    p.official_argument("--add_weight_index", type=A.index_arg, default=defaults.PAIRS_ADD_WEIGHT_INDEX,
                        help="first N W+ layers stay pure face; 'none' = learned weights only (default %(default)s)")
    # as the official script: a 'truncation' stored in the checkpoint overrides --truncation
    p.set_defaults(checkpoint_truncation_wins=True)
    return p


def transfer_parser() -> OfficialFirstParser:
    """The flags of ``style_transfer_folder.py``."""
    p = _parser("Style transfer of every input face with every style image.", seed=False)
    _add_folder_flags(p, defaults.TRANSFER_ADD_WEIGHT_INDEX)
    return p


def video_parser() -> OfficialFirstParser:
    """The flags of ``gen_video.py``."""
    p = _parser("Style interpolation video of each input face.", images=False)
    _add_folder_flags(p, defaults.VIDEO_ADD_WEIGHT_INDEX)
    A.add_video_flags(p, snake=True)
    return p


def generate_image_pairs(argv: list[str] | None = None) -> int:
    """``generate_image_pairs.py``: writes ``{i:06d}.jpg`` = [natural | stylized]."""
    return _run(PairsCommand(), pairs_parser().parse_args(argv))


def style_transfer_folder(argv: list[str] | None = None) -> int:
    """``style_transfer_folder.py``: writes ``{input}_v_{style}.jpg`` = [input | style | output]."""
    return _run(TransferCommand(), transfer_parser().parse_args(argv))


def gen_video(argv: list[str] | None = None) -> int:
    """``gen_video.py``: writes ``{input}.mp4`` = [input | sliding style window | output]."""
    return _run(VideoCommand(), video_parser().parse_args(argv))


def entry(name: str) -> None:
    """Run drop-in script ``name`` with ``sys.argv`` and exit with its status."""
    sys.exit({"generate_image_pairs": generate_image_pairs, "style_transfer_folder": style_transfer_folder,
              "gen_video": gen_video}[name]())
