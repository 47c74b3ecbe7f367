"""The ``blendgan`` command line: the only code that parses arguments.

Each command is a :class:`~blendgan.cli.base.Command` that registers its own parser and
calls the library with typed arguments: :mod:`.jobs` (pairs, transfer, video), :mod:`.sheet`,
:mod:`.align`, :mod:`.info` (info, download), :mod:`.export`, :mod:`.web`, :mod:`.train` (train,
train-style-encoder), :mod:`.eval`; :mod:`.official` holds the drop-in scripts' flag sets.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from .align import AlignCommand
from .base import Command, quiet_output, run, setup_logging, sigterm_as_interrupt
from .eval import EvalCommand
from .export import ExportCommand
from .info import DownloadCommand, InfoCommand
from .jobs import PairsCommand, TransferCommand, VideoCommand
from .sheet import SheetCommand
from .train import TrainCommand, TrainStyleEncoderCommand
from .web import WebCommand

#: the subcommands, in the order of ``blendgan --help``
COMMANDS: tuple[type[Command], ...] = (PairsCommand, TransferCommand, VideoCommand, SheetCommand, AlignCommand,
                                       InfoCommand, DownloadCommand, ExportCommand, WebCommand, TrainCommand,
                                       TrainStyleEncoderCommand, EvalCommand)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blendgan", description="BlendGAN: arbitrary stylized face generation.")
    parser.add_argument("--version", action="version", version=f"blendgan {__version__}")
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)
    setup_logging(quiet)
    with sigterm_as_interrupt(), quiet_output(quiet):
        return run(args.command, args)


if __name__ == "__main__":
    sys.exit(main())
