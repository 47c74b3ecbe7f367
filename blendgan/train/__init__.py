"""Training: ``blendgan train`` (the GAN) and ``blendgan train-style-encoder`` (contrastive).

``add_subparsers(subparsers)`` registers both commands on an ``argparse`` subparsers object;
each sets ``func`` to a function of the parsed namespace that returns an exit status
(0 done, 130 stopped by Ctrl-C/SIGTERM after saving a checkpoint).  :func:`main` is a
standalone entry point with the same commands (used by tests and ``torchrun`` scripts).

Importing this package builds or compiles nothing; torch.distributed is initialised only
by a command, and only when ``WORLD_SIZE`` > 1.
"""
from __future__ import annotations

import argparse
import logging
import sys

from .common import TrainError

__all__ = ["TrainError", "add_subparsers", "build_parser", "main"]


def add_subparsers(subparsers) -> None:
    """Register ``train`` and ``train-style-encoder`` on ``subparsers`` (from ``add_subparsers()``)."""
    from . import gan, style_encoder
    gan.add_parser(subparsers)
    style_encoder.add_parser(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blendgan-train", description="BlendGAN training commands.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_subparsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command: exit status (2 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    log = logging.getLogger("blendgan")
    saved = log.handlers[:], log.level, log.propagate
    if not log.handlers:  # messages on stderr for this call; the logger is restored afterwards
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.handlers[:] = [handler]
        log.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
        log.propagate = False
    try:
        return args.func(args)
    except TrainError as exc:
        print(f"blendgan: error: {exc}", file=sys.stderr)
        return 2
    finally:
        log.handlers[:] = saved[0]
        log.setLevel(saved[1])
        log.propagate = saved[2]
