"""``blendgan`` command line: a thin layer over :mod:`blendgan.pipeline`.

Subcommands: ``pairs``, ``transfer``, ``video``, ``align``, ``info``, ``download``, ``web``,
``train``, ``train-style-encoder``.  Defaults come
from :mod:`blendgan.pipeline` (the official scripts' values).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from . import align as align_cmd
from . import pipeline as P
from .model import PRECISIONS

DEFAULT_CKPT = "pretrained_models/blendgan.pt"
DEFAULT_PSP = "pretrained_models/psp_encoder.pt"
DEFAULT_WEIGHTS_DIR = "pretrained_models"

log = logging.getLogger("blendgan")


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes (test runners and
    notebooks replace it; a handler bound to an old, closed stream would fail)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(quiet: bool = False) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.ERROR if quiet else logging.INFO)
    log.propagate = False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a job stops as on Ctrl-C (temporary files removed)."""


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


def _names(name: str, snake: bool) -> list[str]:
    """``--batch-size`` plus, with ``snake``, ``--batch_size`` (the official scripts' spelling)."""
    return [f"--{name}"] + ([f"--{name.replace('-', '_')}"] if snake and "-" in name else [])


def add_runtime_flags(p: argparse.ArgumentParser, snake: bool = False, seed: bool = True,
                      images: bool = True) -> None:
    """Flags every job takes (``snake`` spells them with underscores too, for the scripts);
    ``seed`` for jobs that draw random numbers, ``images`` for jobs that write images."""
    if seed:
        p.add_argument("--seed", type=int, default=P.DEFAULT_SEED, help="random seed (default %(default)s)")
    p.add_argument("--device", type=device_arg, default="auto",
                   help="auto, cpu, cuda, cuda:1 ... (default auto: cuda if available)")
    p.add_argument(*_names("batch-size", snake), dest="batch_size", type=int_at_least(1),
                   default=P.DEFAULT_BATCH_SIZE, help="images per generator call (default %(default)s)")
    if images:
        p.add_argument("--format", choices=("jpg", "png"), default=P.DEFAULT_FORMAT,
                       help="output image format; png is lossless (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bars or info messages")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the generator: on GPUs faster on long jobs after a one-off compile; "
                        "on CPUs the default (Winograd) path is faster in float32")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="compute precision; fp32 (strict, also on GPUs) reproduces the official outputs, "
                        "tf32 lets GPU convolutions use TF32 tensor cores (~1e-3 off), bf16 is much faster "
                        "on CPUs with AMX and on recent GPUs, fp16 on GPUs (default %(default)s)")


def add_cache_flag(p: argparse.ArgumentParser, snake: bool = False) -> None:
    p.add_argument(*_names("cache-dir", snake), dest="cache_dir", default=None,
                   help="keep face/style codes here; a rerun over the same images skips encoding")


def add_align_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--align", nargs="?", const="auto", default="never", choices=P.ALIGN_MODES,
                   help="FFHQ-align input faces (needs blendgan[align]); bare --align means auto: images "
                        "that are not square 256/512/1024 px (default: never, as the official scripts)")


def add_video_flags(p: argparse.ArgumentParser, snake: bool = False) -> None:
    """Video settings (defaults: the official gen_video.py)."""
    p.add_argument("--styles", type=int_at_least(2), default=P.VIDEO_STYLES,
                   help="styles per video, drawn at random with repeats (default %(default)s)")
    p.add_argument("--fps", type=positive_float, default=P.VIDEO_FPS,
                   help="frames per second of the video (default %(default)s)")
    p.add_argument(*_names("transition-steps", snake), *_names("frames-per-transition", snake),
                   dest="transition_steps", type=int_at_least(1), default=P.VIDEO_TRANSITION_STEPS,
                   help="frames of each style change (default %(default)s)")
    p.add_argument("--layout", choices=P.VIDEO_LAYOUTS, default="triptych",
                   help="triptych = [input | style window | output] as the official script; output = the "
                        "stylized face alone (default %(default)s)")
    p.add_argument("--gif", action="store_true", help="write a looping GIF instead of an mp4 (short loops)")
    p.add_argument(*_names("hold-frames", snake), dest="hold_frames", type=int_at_least(0),
                   default=P.VIDEO_HOLD_FRAMES,
                   help="frames held on each style and at the end (default %(default)s)")


def open_model(ckpt: str, psp_encoder: str | None, device: str, size: int | None = None,
               channel_multiplier: int | None = None, precision: str = "fp32", compile: bool = False):
    """Load the model for a job, turning checkpoint problems into one-line CLI errors."""
    from .checkpoint import CheckpointError
    from .model import BlendGAN, configure_backends
    configure_backends(precision)
    try:
        model = BlendGAN.from_pretrained(ckpt, psp_encoder=psp_encoder, device=device, size=size,
                                         channel_multiplier=channel_multiplier, dtype=precision)
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None
    log.info("loaded %s (%dpx) on %s%s", ckpt, model.size, model.device,
             f" with pSp {psp_encoder}" if psp_encoder else "")
    return model.compile_synthesis() if compile else model


@contextmanager
def distributed(device: str):
    """Shard and device of this process.  Under ``torchrun`` (``WORLD_SIZE`` > 1) a process
    group is joined (NCCL on GPUs, gloo on CPUs), each rank takes its own GPU
    (``cuda:LOCAL_RANK``) and its share of the work, and all ranks meet at the end."""
    shard = P.Shard.from_env()
    if shard.world == 1:
        yield shard, device
        return
    import torch
    import torch.distributed as dist
    local = int(os.environ.get("LOCAL_RANK", shard.rank))
    if device == "auto":
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield shard, device
        dist.barrier()
    finally:
        dist.destroy_process_group()


def check_paths(a: argparse.Namespace) -> None:
    """Before a model is loaded: the inputs exist, and the output (and cache) folders exist
    or are created and can be written, so that such a mistake costs no loading time."""
    from . import io
    for attr in ("input_img_path", "style_img_path", "style_img", "sample_zs"):
        path = getattr(a, attr, None)
        if path and not Path(path).exists():
            raise CLIError(f"{path}: no such file or directory")
    for attr in ("outdir", "cache_dir"):
        if getattr(a, attr, None):
            io.prepare_outdir(getattr(a, attr))


def finish(report: P.JobReport, outdir) -> int:
    """Print the job summary; exit status 1 when some inputs failed, else 0."""
    log.info("%s -> %s", report.summary(), outdir)
    for path, reason in report.failed:
        print(f"failed: {reason if path in reason else f'{path}: {reason}'}", file=sys.stderr)
    return 1 if report.failed else 0


# -- subcommands ----------------------------------------------------------------------------------
def cmd_pairs(a: argparse.Namespace) -> int:
    check_paths(a)
    with distributed(a.device) as (shard, device):
        model = open_model(a.ckpt, None, device, a.size, a.channel_multiplier, a.precision,
                           a.compile)
        truncation = a.truncation
        if getattr(a, "checkpoint_truncation_wins", False) and model.stored_truncation is not None:
            truncation = model.stored_truncation  # the official script's rule
            log.info("truncation %s (from the checkpoint)", truncation)
        zs = P.load_sample_zs(a.sample_zs, a.pics, model.generator.style_dim) if a.sample_zs else None
        report = P.run_pairs(model, a.outdir, pics=a.pics, style_image=a.style_img, zs=zs, truncation=truncation,
                             truncation_mean=a.truncation_mean, add_weight_index=a.add_weight_index, seed=a.seed,
                             batch_size=a.batch_size, fmt=a.format, overwrite=a.overwrite,
                             progress=not a.quiet and shard.rank == 0, shard=shard)
    return finish(report, a.outdir)


def cmd_transfer(a: argparse.Namespace) -> int:
    check_paths(a)
    with distributed(a.device) as (shard, device):
        model = open_model(a.ckpt, a.psp_encoder, device, a.size, a.channel_multiplier, a.precision,
                           a.compile)
        report = P.run_transfer(model, a.input_img_path, a.style_img_path, a.outdir,
                                add_weight_index=a.add_weight_index, batch_size=a.batch_size, fmt=a.format,
                                overwrite=a.overwrite, progress=not a.quiet and shard.rank == 0,
                                cache_dir=a.cache_dir, shard=shard, align=a.align)
    return finish(report, a.outdir)


VIDEO_INPUTS = (".mp4", ".mov", ".mkv", ".m4v", ".avi", ".webm")


def cmd_video(a: argparse.Namespace) -> int:
    check_paths(a)
    if Path(a.input_img_path).suffix.lower() in VIDEO_INPUTS:
        return stylize_face_video(a)
    with distributed(a.device) as (shard, device):
        model = open_model(a.ckpt, a.psp_encoder, device, a.size, a.channel_multiplier, a.precision,
                           a.compile)
        report = P.run_video(model, a.input_img_path, a.style_img_path, a.outdir,
                             add_weight_index=a.add_weight_index, n_styles=a.styles, seed=a.seed, fps=a.fps,
                             transition_steps=a.transition_steps, hold_frames=a.hold_frames,
                             batch_size=a.batch_size, overwrite=a.overwrite,
                             progress=not a.quiet and shard.rank == 0, cache_dir=a.cache_dir, shard=shard,
                             align=a.align, layout=a.layout, gif=a.gif)
    return finish(report, a.outdir)


def stylize_face_video(a: argparse.Namespace) -> int:
    """``blendgan video --input clip.mp4 --style STYLES``: one ``{clip}_v_{style}.mp4`` per style."""
    from .video_stylize import stylize_video_folder
    model = open_model(a.ckpt, a.psp_encoder, a.device, a.size, a.channel_multiplier, a.precision, a.compile)
    report = stylize_video_folder(model, a.input_img_path, a.style_img_path, a.outdir, gif=a.gif,
                                  overwrite=a.overwrite, add_weight_index=a.add_weight_index,
                                  batch_size=a.batch_size, progress=not a.quiet)
    return finish(report, a.outdir)


def cmd_info(a: argparse.Namespace) -> int:
    import platform

    import cv2
    import numpy
    import torch
    import torchvision

    from .checkpoint import CheckpointError, summarize
    from .io import video_backend
    from .model import resolve_device
    from .ops import backend_info, cpu_backend_info
    print(f"blendgan {__version__}  python {platform.python_version()}  torch {torch.__version__}  "
          f"torchvision {torchvision.__version__}  numpy {numpy.__version__}  opencv {cv2.__version__}")
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
            print(f"{path}: not found (run `blendgan download --dir {a.weights_dir}`)")
            continue
        try:
            summary = summarize(path)
        except CheckpointError as exc:
            print(f"{exc} ")
            continue
        wrong = "" if summary.startswith(kind) else f"  <- WRONG FILE: this name should hold the {kind}"
        print(f"{path}: {summary}{wrong}")
    return 0


def cmd_download(a: argparse.Namespace) -> int:
    from .download import DownloadError, download
    try:
        paths = download(a.dir, names=tuple(a.files), overwrite=a.overwrite)
    except DownloadError as exc:
        raise CLIError(str(exc)) from None
    for path in paths:
        print(path)
    return 0


# -- parser ---------------------------------------------------------------------------------------
def _model_flags(p: argparse.ArgumentParser, psp: bool) -> None:
    p.add_argument("--ckpt", default=DEFAULT_CKPT, help="BlendGAN checkpoint (default %(default)s)")
    if psp:
        p.add_argument("--psp-encoder", "--psp_encoder_ckpt", dest="psp_encoder", default=DEFAULT_PSP,
                       help="pSp encoder checkpoint (default %(default)s)")
    p.add_argument("--size", type=int, default=None, help="checked against the checkpoint (inferred when omitted)")
    p.add_argument("--channel-multiplier", "--channel_multiplier", dest="channel_multiplier", type=int,
                   default=None, help="checked against the checkpoint (inferred when omitted)")


def _folder_job_flags(p: argparse.ArgumentParser, outdir: str, add_weight_index: int, input_help: str) -> None:
    """Flags shared by the jobs that read a face folder and a style folder."""
    _model_flags(p, psp=True)
    p.add_argument("--input", "--input-img-path", "--input_img_path", dest="input_img_path", required=True,
                   help=input_help)
    p.add_argument("--style", "--style-img-path", "--style_img_path", dest="style_img_path", required=True,
                   help="style image or folder")
    p.add_argument("--outdir", default=outdir, help="output folder (default %(default)s)")
    add_cache_flag(p)
    add_align_flag(p)
    p.add_argument("--add-weight-index", "--add_weight_index", dest="add_weight_index", type=index_arg,
                   default=add_weight_index, help="first N W+ layers stay pure face; 'none' = learned "
                   "weights only (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blendgan", description="BlendGAN: arbitrary stylized face generation.")
    parser.add_argument("--version", action="version", version=f"blendgan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    text = "random faces, natural and stylized side by side (latent/reference-guided)"
    p = sub.add_parser("pairs", help=text, description=f"Write {text}: {{i:06d}}.jpg = [natural | stylized].")
    _model_flags(p, psp=False)
    p.add_argument("--outdir", default="outputs/pairs", help="output folder (default %(default)s)")
    p.add_argument("--pics", type=int_at_least(1), default=P.PAIRS_PICS, help="number of pairs (default %(default)s)")
    p.add_argument("--style-img", "--style_img", dest="style_img", default=None,
                   help="reference style image; omitted: a random style code (latent-guided)")
    p.add_argument("--truncation", type=finite_float, default=None,
                   help="face truncation psi (default: the checkpoint's, else 0.75; >=1 disables)")
    p.add_argument("--truncation-mean", "--truncation_mean", dest="truncation_mean", type=int_at_least(1),
                   default=P.DEFAULT_TRUNCATION_MEAN,
                   help="samples for the mean w when the checkpoint has none (default %(default)s)")
    p.add_argument("--sample-zs", "--sample_zs", dest="sample_zs", default=None,
                   help="torch.save'd face codes [P, 512] to use instead of random ones")
    p.add_argument("--add-weight-index", "--add_weight_index", dest="add_weight_index", type=index_arg,
                   default=P.PAIRS_ADD_WEIGHT_INDEX, help="first N W+ layers stay pure face; 'none' = learned "
                   "weights only (default %(default)s)")
    add_runtime_flags(p)
    p.set_defaults(func=cmd_pairs)

    text = "style transfer: every face x every style in two folders"
    p = sub.add_parser("transfer", help=text,
                       description=f"Write {text}: {{face}}_v_{{style}}.jpg = [input | style | output].")
    _folder_job_flags(p, "outputs/transfer", P.TRANSFER_ADD_WEIGHT_INDEX, "face image or folder")
    add_runtime_flags(p, seed=False)
    p.set_defaults(func=cmd_transfer)

    text = "interpolation video of each face through random styles"
    p = sub.add_parser("video", help=text, description=f"Write an {text} ({{face}}.mp4), or restyle the face "
                       "in a video clip with each style ({clip}_v_{style}.mp4).")
    _folder_job_flags(p, "outputs/video", P.VIDEO_ADD_WEIGHT_INDEX,
                      "face image or folder, or a video of a face (.mp4 .mov .mkv ...)")
    add_video_flags(p)
    add_runtime_flags(p, images=False)
    p.set_defaults(func=cmd_video)

    align_cmd.add_subparser(sub)

    p = sub.add_parser("info", help="versions, device, op backends, checkpoints found")
    p.add_argument("--weights-dir", default=DEFAULT_WEIGHTS_DIR,
                   help="where to look for checkpoints (default %(default)s)")
    p.add_argument("--build-ops", action="store_true",
                   help="build the compiled ops now: the C++ Winograd transforms, and the CUDA ops when a GPU is present")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="fetch and validate the official weights")
    p.add_argument("--dir", default=DEFAULT_WEIGHTS_DIR, help="destination folder (default %(default)s)")
    p.add_argument("--files", nargs="+", default=["blendgan", "psp_encoder"],
                   choices=["blendgan", "psp_encoder", "style_encoder"], help="which files (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="fetch again even if present and valid")
    p.set_defaults(func=cmd_download)

    from . import web
    web.add_subparser(sub)

    from .train import add_subparsers as add_train_subparsers
    add_train_subparsers(sub)
    return parser


def run(func, args) -> int:
    """Run a command function, mapping expected failures to one line and exit status 2."""
    from .align import AlignmentUnavailable
    from .checkpoint import CheckpointError
    from .io import ImageError
    try:
        return func(args)
    except (CLIError, CheckpointError, ImageError, ValueError, OSError, AlignmentUnavailable) as exc:
        # our OSErrors carry the path in their message: drop the "[Errno N]" prefix
        own = isinstance(exc, OSError) and exc.filename is None and exc.strerror
        print(f"blendgan: error: {exc.strerror if own else exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"blendgan: {how} (finished outputs are kept; rerun to resume)", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt():
    """Within: SIGTERM (a scheduler, ``kill``, torchrun stopping its workers) stops the
    command as Ctrl-C does.  The previous handler is restored on leaving."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(getattr(args, "quiet", False))
    with sigterm_as_interrupt():
        return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
