"""Argument types and the flag groups several commands share (defaults from :mod:`blendgan.defaults`)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from .. import defaults, io
from ..checkpoint import generator_config
from ..controls import check_strength, check_style_weights
from ..errors import UsageError
from ..io.video import frame_rate
from ..runtime import PRECISIONS


# -- types ----------------------------------------------------------------------------------------
def index_arg(value: str) -> int | None:
    """``--add-weight-index``: an integer, or ``none`` for the learned blend weights only."""
    if value.lower() in ("none", "-1"):
        return None
    try:
        index = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {value!r}") from None
    if index < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'none', got {value}")
    return index


def int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return number
    parse.__name__ = f"integer >= {low}"
    return parse


def finite_float(value: str) -> float:
    """An argparse type: a finite number."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
    return number


def positive_float(value: str) -> float:
    """An argparse type: a finite number > 0."""
    number = finite_float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def strength_arg(value: str) -> float | list[float]:
    """``--strength``: a number >= 0, or a comma list of one number per W+ layer."""
    try:
        values = [float(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a comma list of numbers, got {value!r}") from None
    try:
        check_strength(values[0] if len(values) == 1 else values)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return values[0] if len(values) == 1 else values


def weights_arg(value: str) -> list[float]:
    """``--style-weights``: a comma list of numbers with a positive sum."""
    try:
        values = [float(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {value!r}") from None
    try:
        check_style_weights(values, len(values))
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return values


def fps_arg(value: str) -> float:
    """``--fps``: a frame rate a video file can store (:func:`blendgan.io.video.frame_rate`)."""
    number = positive_float(value)
    try:
        frame_rate(number)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return number


def device_arg(value: str) -> str:
    """``--device``: ``auto`` or a torch device that exists on this machine."""
    import torch
    if value == "auto":
        return value
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {value!r} (expected auto, cpu, cuda, cuda:N ...)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{value}: no CUDA device available on this machine")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{value}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{value}: MPS is not available on this machine")
    return value


# -- flag groups ----------------------------------------------------------------------------------
def names(name: str, snake: bool) -> list[str]:
    """``--batch-size`` plus, with ``snake``, ``--batch_size`` (the official scripts' spelling)."""
    return [f"--{name}"] + ([f"--{name.replace('-', '_')}"] if snake and "-" in name else [])


def add_runtime_flags(p: argparse.ArgumentParser, snake: bool = False, seed: bool = True,
                      images: bool = True, resumable: bool = True) -> None:
    """Flags every job takes (``snake`` spells them with underscores too, for the scripts);
    ``seed`` for jobs that draw random numbers, ``images`` for jobs that write images,
    ``resumable`` for jobs that skip the outputs they find."""
    if seed:
        p.add_argument("--seed", type=int, default=defaults.SEED, help="random seed (default %(default)s)")
    p.add_argument("--device", type=device_arg, default="auto",
                   help="auto, cpu, cuda, cuda:1 ... (default auto: cuda if available)")
    p.add_argument(*names("batch-size", snake), dest="batch_size", type=int_at_least(1),
                   default=defaults.BATCH_SIZE, help="images per generator call (default %(default)s)")
    if images:
        p.add_argument("--format", choices=io.FORMATS, default=defaults.FORMAT,
                       help="output image format; png is lossless (default %(default)s)")
    if resumable:
        p.add_argument("--overwrite", action="store_true",
                       help="redo outputs that already exist (else they are skipped, and a folder holding "
                            "outputs made with other settings is refused)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or info messages")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the generator: on GPUs faster on long jobs after a one-off compile; "
                        "on CPUs the default (Winograd) path is faster in float32")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="compute precision; fp32 (strict, also on GPUs) reproduces the official outputs, "
                        "tf32 lets GPU convolutions use TF32 tensor cores (~1e-3 off), bf16 is much faster "
                        "on CPUs with AMX and on recent GPUs, fp16 on GPUs (default %(default)s)")


def add_cache_flag(p: argparse.ArgumentParser, snake: bool = False) -> None:
    p.add_argument(*names("cache-dir", snake), dest="cache_dir", default=None,
                   help="keep face/style codes here; a rerun over the same images skips encoding")


def add_invert_flags(p: argparse.ArgumentParser) -> None:
    """How faces are inverted (:mod:`blendgan.inversion`)."""
    p.add_argument("--invert", choices=("psp", "optimize", "pti"), default=defaults.INVERT_METHOD,
                   help="face inversion: psp = the encoder alone (default, fast); optimize = W+ refined "
                        "against the photo; pti = then the generator tuned to it (closest, slowest)")
    p.add_argument("--invert-steps", dest="invert_steps", type=int_at_least(0), default=defaults.INVERT_STEPS,
                   help="optimisation steps of --invert optimize/pti (pti: as many again tuning; "
                        "default %(default)s)")


def add_align_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--align", nargs="?", const="auto", default="never", choices=defaults.ALIGN_MODES,
                   help="FFHQ-align input faces (needs blendgan[align]); bare --align means auto: images "
                        "that are not square 256/512/1024 px (default: never, as the official scripts)")


def add_video_flags(p: argparse.ArgumentParser, snake: bool = False) -> None:
    """Video settings (defaults: the official gen_video.py)."""
    p.add_argument("--styles", type=int_at_least(2), default=defaults.VIDEO_STYLES,
                   help="styles per video, drawn at random with repeats (default %(default)s)")
    p.add_argument("--fps", type=fps_arg, default=defaults.VIDEO_FPS,
                   help="frames per second of the video (default %(default)s)")
    p.add_argument(*names("transition-steps", snake), *names("frames-per-transition", snake),
                   dest="transition_steps", type=int_at_least(1), default=defaults.VIDEO_TRANSITION_STEPS,
                   help="frames of each style change (default %(default)s)")
    p.add_argument("--layout", choices=defaults.VIDEO_LAYOUTS, default="triptych",
                   help="triptych = [input | style window | output] as the official script; output = the "
                        "stylized face alone (default %(default)s)")
    p.add_argument("--gif", action="store_true", help="write a looping GIF instead of an mp4 (short loops)")
    p.add_argument(*names("hold-frames", snake), dest="hold_frames", type=int_at_least(0),
                   default=defaults.VIDEO_HOLD_FRAMES,
                   help="frames held on each style and at the end (default %(default)s)")


def add_control_flags(p: argparse.ArgumentParser) -> None:
    """The stylization controls of :mod:`blendgan.controls`."""
    p.add_argument("--strength", type=strength_arg, default=defaults.STRENGTH,
                   help="style strength: 0 = the face alone, 1 = the official blend, more = further toward the "
                        "style; or a comma list with one value per W+ layer (default %(default)s)")
    p.add_argument("--preserve-color", "--preserve-colour", dest="preserve_color", action="store_true",
                   help="keep the face's colours (its fine layers, 64x64 and up, are not stylized)")


def add_offline_flag(p: argparse.ArgumentParser) -> None:
    """``--offline``: missing default weights are an error, not a download (None when not given:
    ``BLENDGAN_OFFLINE`` decides)."""
    p.add_argument("--offline", action="store_true", default=None,
                   help=f"never download: missing default weights are an error (also {defaults.ENV_OFFLINE}=1); "
                        f"without it, missing {defaults.WEIGHTS_DIR}/*.pt are downloaded first")


def add_model_flags(p: argparse.ArgumentParser, psp: bool) -> None:
    p.add_argument("--ckpt", default=defaults.CKPT, help="BlendGAN checkpoint (default %(default)s)")
    if psp:
        p.add_argument("--psp-encoder", "--psp_encoder_ckpt", dest="psp_encoder", default=defaults.PSP_ENCODER,
                       help="pSp encoder checkpoint (default %(default)s)")
    p.add_argument("--size", type=int, default=None, help="checked against the checkpoint (inferred when omitted)")
    p.add_argument("--channel-multiplier", "--channel_multiplier", dest="channel_multiplier", type=int,
                   default=None, help="checked against the checkpoint (inferred when omitted)")
    add_offline_flag(p)


def add_index_flag(p: argparse.ArgumentParser, default: int, snake_only: bool = False) -> None:
    flags = ["--add_weight_index"] if snake_only else ["--add-weight-index", "--add_weight_index"]
    p.add_argument(*flags, dest="add_weight_index", type=index_arg, default=default,
                   help="first N W+ layers stay pure face; 'none' = learned weights only (default %(default)s)")


def add_folder_job_flags(p: argparse.ArgumentParser, outdir: str, add_weight_index: int, input_help: str) -> None:
    """Flags shared by the jobs that read a face folder and a style folder."""
    add_model_flags(p, psp=True)
    p.add_argument("--input", "--input-img-path", "--input_img_path", dest="input_img_path", required=True,
                   help=input_help)
    p.add_argument("--style", "--style-img-path", "--style_img_path", dest="style_img_path", required=True,
                   help="style image or folder")
    p.add_argument("--outdir", default=outdir, help="output folder (default %(default)s)")
    add_cache_flag(p)
    add_align_flag(p)
    add_index_flag(p, add_weight_index)


def check_paths(a: argparse.Namespace) -> None:
    """Before a model is loaded: the inputs exist, the output (and cache) folders exist or are
    created and can be written, and a per-layer strength has one value per W+ layer of the
    checkpoint, so that such a mistake costs no loading time."""
    for attr in ("input_img_path", "style_img_path", "style_img", "sample_zs"):
        paths = getattr(a, attr, None)
        for path in paths if isinstance(paths, list) else [paths]:
            if path and not Path(path).exists():
                raise UsageError(f"{path}: no such file or directory")
    if isinstance(getattr(a, "strength", None), list) and Path(a.ckpt).exists():  # (else it is downloaded first)
        n_latent = generator_config(a.ckpt).n_latent
        if len(a.strength) != n_latent:
            raise UsageError(f"--strength: {a.ckpt} has {n_latent} W+ layers, so a list needs {n_latent} values, "
                             f"got {len(a.strength)}")
    for attr in ("outdir", "cache_dir"):
        if getattr(a, attr, None):
            io.prepare_outdir(getattr(a, attr))
