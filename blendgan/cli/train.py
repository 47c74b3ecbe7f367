"""``blendgan train`` and ``blendgan train-style-encoder`` (:mod:`blendgan.train`)."""
from __future__ import annotations

import argparse

from ..models.style_encoder import STYLE_POOL
from ..train import gan, style_encoder
from .base import Command


def _explicit_action(base: type) -> type:
    def __call__(self, parser, namespace, values, option_string=None):
        base.__call__(self, parser, namespace, values, option_string)
        given = set(getattr(namespace, "_explicit", ()) or ())
        given.add(self.dest)
        setattr(namespace, "_explicit", given)
    return type(f"Explicit{base.__name__}", (base,), {"__call__": __call__})


def track_explicit(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` record the flags given on the command line in ``namespace._explicit``.

    Call before adding arguments.  On ``--resume``, flags not given take the checkpoint's values.
    """
    store = _explicit_action(argparse._StoreAction)
    parser.register("action", None, store)
    parser.register("action", "store", store)
    parser.register("action", "store_true", _explicit_action(argparse._StoreTrueAction))
    parser.register("action", "store_false", _explicit_action(argparse._StoreFalseAction))



def add_common_flags(p) -> None:
    """Flags both training commands share."""
    p.add_argument("--outdir", default=None,
                   help="run folder: checkpoints/, log.jsonl, samples/, tb/ (default with --resume: its run folder)")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="continue from a checkpoint file or run folder (its checkpoints/latest.pt)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="keep the resized dataset as memory-mapped uint8 .npy files here (built once)")
    p.add_argument("--workers", type=int, default=4, help="threads decoding/augmenting images (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="base seed of every random stream (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps (default %(default)s)")
    p.add_argument("--keep", type=int, default=3, help="step checkpoints kept, 0 = all (default %(default)s)")
    p.add_argument("--log-every", type=int, default=10, help="log losses every N steps (default %(default)s)")
    p.add_argument("--tensorboard", choices=("auto", "on", "off"), default="auto",
                   help="TensorBoard scalars in OUTDIR/tb (auto: when the package is installed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_gan_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train BlendGAN (StyleGAN2 + style branch + WBM) on faces and artworks",
        description="Train the BlendGAN generator with face, style and projection discriminators. "
                    "Checkpoints in OUTDIR/checkpoints/ load with BlendGAN.from_pretrained and every "
                    "blendgan command. Several processes: torchrun --nproc_per_node N -m blendgan train ... "
                    "On --resume, flags not given take the checkpoint's values.")
    track_explicit(p)
    g = p.add_argument_group("data")
    g.add_argument("--faces", default=None, help="folder of aligned face images")
    g.add_argument("--styles", default=None, help="folder of aligned artistic face images (artworks)")
    g.add_argument("--style-encoder", default=None, metavar="PATH",
                   help="frozen style encoder: train-style-encoder output, blendgan.pt or style_encoder.pt "
                        "(default: random, with a warning)")
    g.add_argument("--style-pool", type=int, default=STYLE_POOL,
                   help="VGG input size for the style codes; 256 as at inference (smaller only for quick tests)")
    g.add_argument("--no-flip", dest="flip", action="store_false", help="no random left-right mirroring of reals")
    g = p.add_argument_group("architecture (taken from the checkpoint on --resume, from --init when given)")
    g.add_argument("--size", type=int, default=1024, help="resolution (default %(default)s)")
    g.add_argument("--style-dim", type=int, default=512, help="latent width (default %(default)s)")
    g.add_argument("--n-mlp", type=int, default=8, help="layers of each mapping network (default %(default)s)")
    g.add_argument("--channel-multiplier", type=int, default=2, help="config-F widths (default %(default)s)")
    g.add_argument("--channels", default=None,
                   help="explicit widths from 4px up, e.g. 32,32,16,16 for a tiny 32px model")
    g.add_argument("--init", default=None, metavar="PATH",
                   help="start from a checkpoint's weights (g_ema/g/d...: e.g. blendgan.pt or a StyleGAN2 one)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch", type=int, default=4, help="faces (and artworks) per process per step (default %(default)s)")
    g.add_argument("--kimg", type=float, default=25000, help="budget in thousands of real faces shown (default %(default)s)")
    g.add_argument("--lr", type=float, default=0.002, help="Adam learning rate (default %(default)s)")
    g.add_argument("--r1", type=float, default=10.0, help="R1 gamma, 0 disables (default %(default)s)")
    g.add_argument("--d-reg-every", type=int, default=16, help="lazy R1 interval (default %(default)s)")
    g.add_argument("--path-regularize", type=float, default=2.0, help="path-length weight, 0 disables (default %(default)s)")
    g.add_argument("--g-reg-every", type=int, default=4, help="lazy path-length interval (default %(default)s)")
    g.add_argument("--path-batch-shrink", type=int, default=2, help="path-length batch divisor (default %(default)s)")
    g.add_argument("--pl-decay", type=float, default=0.01, help="path-length mean decay (default %(default)s)")
    g.add_argument("--mixing", type=float, default=0.9, help="style-mixing probability (default %(default)s)")
    g.add_argument("--ema-kimg", type=float, default=10.0, help="g_ema half-life in kimg (default %(default)s)")
    g.add_argument("--face-weight", type=float, default=1.0, help="weight of the face GAN loss (default %(default)s)")
    g.add_argument("--style-weight", type=float, default=1.0, help="weight of the style GAN loss (default %(default)s)")
    g.add_argument("--proj-weight", type=float, default=1.0,
                   help="weight of the projection-discriminator loss (default %(default)s)")
    g.add_argument("--mismatch-weight", type=float, default=1.0,
                   help="weight of mismatched (artwork, other style code) negatives, 0 disables (default %(default)s)")
    g.add_argument("--fp16", action="store_true", help="mixed precision for the discriminators (CUDA only)")
    g = p.add_argument_group("run")
    add_common_flags(g)
    g.add_argument("--sample-every", type=int, default=500, help="sample grid every N steps, 0 = never (default %(default)s)")
    g.add_argument("--n-sample", type=int, default=8, help="faces per sample grid row (default %(default)s)")
    g.add_argument("--n-sample-styles", type=int, default=4, help="stylized rows per grid (default %(default)s)")
    p.set_defaults(command=TrainCommand())
    return p



def add_style_encoder_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train-style-encoder", help="contrastive (SimCLR) training of the Gram-matrix style encoder",
        description="Self-supervised training of the style encoder on a folder of artworks. Output: "
                    "OUTDIR/checkpoints/latest.pt with the 'style_encoder' weights (the generator's "
                    "embedder.* keys), for `blendgan train --style-encoder`. On --resume, flags not given "
                    "take the checkpoint's values.")
    track_explicit(p)
    p.add_argument("--data", default=None, help="folder of artworks (any size)")
    p.add_argument("--size", type=int, default=256, help="view size in pixels (default %(default)s)")
    p.add_argument("--load-size", type=int, default=None,
                   help="images are loaded/cached at this square size before cropping (default: --size)")
    p.add_argument("--style-dim", type=int, default=512, help="style code width (default %(default)s, the official)")
    p.add_argument("--vgg", default=None, metavar="PATH",
                   help="VGG19 weights: torchvision vgg19 state dict, blendgan.pt, or a style-encoder file")
    p.add_argument("--init", default=None, metavar="PATH", help="start the MLP (and VGG) from this style encoder")
    p.add_argument("--batch", type=int, default=32, help="artworks per process per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=2e-5,
                   help="Adam learning rate (default %(default)s; the equalized-lr MLP on raw Gram vectors "
                        "collapses to one code at GAN-like rates such as 0.002)")
    p.add_argument("--temperature", type=float, default=0.2, help="NT-Xent temperature (default %(default)s)")
    p.add_argument("--steps", type=int, default=20000, help="training steps (default %(default)s)")
    p.add_argument("--kimg", type=float, default=None, help="budget in thousands of artworks (overrides --steps)")
    p.add_argument("--crop-scale", type=float, default=0.3, help="smallest crop area fraction (default %(default)s)")
    p.add_argument("--rotate", type=float, default=10.0, help="max rotation in degrees (default %(default)s)")
    p.add_argument("--perspective", type=float, default=0.05, help="max corner shift, fraction (default %(default)s)")
    p.add_argument("--pool", type=int, default=STYLE_POOL,
                   help="VGG input size; 256 as at inference (smaller only for quick tests)")
    add_common_flags(p)
    p.set_defaults(command=TrainStyleEncoderCommand(), save_every=1000, log_every=10)
    return p


class TrainCommand(Command):
    name = "train"

    @classmethod
    def register(cls, subparsers) -> argparse.ArgumentParser:
        return add_gan_parser(subparsers)

    def run(self, args: argparse.Namespace) -> int:
        return gan.run(args)


class TrainStyleEncoderCommand(Command):
    name = "train-style-encoder"

    @classmethod
    def register(cls, subparsers) -> argparse.ArgumentParser:
        return add_style_encoder_parser(subparsers)

    def run(self, args: argparse.Namespace) -> int:
        return style_encoder.run(args)
