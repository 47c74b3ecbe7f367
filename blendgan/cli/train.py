"""``blendgan train`` and ``blendgan train-style-encoder`` (:mod:`blendgan.train`).

The flags, their types, defaults and help come from the settings dataclasses of
:mod:`blendgan.train.config`; this module only lays them out in groups.  The parsers take
``argument_default=SUPPRESS``, so the namespace holds exactly the flags given on the command
line: those are the settings passed as ``given`` (on ``--resume`` the others take the
checkpoint's values), and the dataclass fills in the rest.
"""
from __future__ import annotations

import argparse
import dataclasses

from ..train import GANConfig, StyleEncoderConfig, train_gan, train_style_encoder
from ..train.config import RunConfig
from .base import Command

#: the flags of both commands, in the order ``--help`` lists them
RUN_FLAGS = ("outdir", "resume", "cache", "workers", "seed", "device", "save_every", "keep", "log_every",
             "tensorboard", "quiet")

#: ``train``'s flag groups: (title, settings)
GAN_LAYOUT = (
    ("data", ("faces", "styles", "style_encoder", "style_pool", "flip")),
    ("architecture (taken from the checkpoint on --resume, from --init when given)",
     ("size", "style_dim", "n_mlp", "channel_multiplier", "channels", "init")),
    ("optimisation", ("batch", "kimg", "lr", "r1", "d_reg_every", "path_regularize", "g_reg_every",
                      "path_batch_shrink", "pl_decay", "mixing", "style_only", "style_mapping_lr", "ema_kimg", "face_weight", "style_weight",
                      "proj_weight", "mismatch_weight", "fp16")),
    ("run", RUN_FLAGS + ("sample_every", "n_sample", "n_sample_styles")),
)

#: ``train-style-encoder``'s flags (one group)
STYLE_ENCODER_LAYOUT = (
    (None, ("data", "size", "load_size", "style_dim", "vgg", "init", "batch", "lr", "temperature", "code_contrast",
            "steps", "kimg", "crop_scale", "rotate", "perspective", "color_jitter", "pool") + RUN_FLAGS),
)

SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def value_type(hint: str) -> type:
    """``'int'``, ``'float | None'`` ... (a field's annotation, a string under postponed
    evaluation) -> the type a flag parses to."""
    names = [part.strip() for part in str(hint).split("|") if part.strip() != "None"]
    if len(names) != 1 or names[0] not in SCALARS:
        raise TypeError(f"no flag type for a setting annotated {hint!r}")
    return SCALARS[names[0]]


def add_setting(container, f: dataclasses.Field) -> None:
    """The flag of one settings field on ``container`` (a parser or an argument group)."""
    meta = f.metadata
    kind = value_type(f.type)
    # argparse %-formats help texts: put the default in now and escape any other '%'
    text = meta["help"].replace("%(default)s", "\0").replace("%", "%%").replace("\0", str(f.default))
    kwargs: dict = {"dest": f.name, "help": text}
    if kind is bool:
        kwargs["action"] = "store_false" if meta.get("negate") else "store_true"
    else:
        kwargs["type"] = kind
        for key in ("metavar", "choices"):
            if key in meta:
                kwargs[key] = meta[key]
    container.add_argument(meta.get("flag", "--" + f.name.replace("_", "-")), **kwargs)


def add_settings(parser: argparse.ArgumentParser, cls: type[RunConfig], layout) -> None:
    """Every field of ``cls`` as a flag, in ``layout``'s groups (a group titled None: the parser itself)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    laid_out = [name for _, names in layout for name in names]
    if sorted(laid_out) != sorted(fields):
        raise RuntimeError(f"{cls.__name__}: the flag layout must name every setting once "
                           f"(missing {sorted(set(fields) - set(laid_out))}, "
                           f"unknown or repeated {sorted(set(laid_out) - set(fields)) or 'none'})")
    for title, names in layout:
        container = parser if title is None else parser.add_argument_group(title)
        for name in names:
            add_setting(container, fields[name])


def settings(cls: type[RunConfig], args: argparse.Namespace):
    """The config of the flags given in ``args`` (parsed with ``argument_default=SUPPRESS``), the
    defaults for the others, and the names of those given."""
    given = frozenset(name for name in cls.names() if hasattr(args, name))
    return cls(**{name: getattr(args, name) for name in given}), given


class TrainCommand(Command):
    name = "train"
    help = "train BlendGAN (StyleGAN2 + style branch + WBM) on faces and artworks"
    description = ("Train the BlendGAN generator with face, style and projection discriminators. "
                   "Checkpoints in OUTDIR/checkpoints/ load with BlendGAN.from_pretrained and every "
                   "blendgan command. Several processes: torchrun --nproc_per_node N -m blendgan train ... "
                   "On --resume, flags not given take the checkpoint's values.")
    config_class: type[RunConfig] = GANConfig
    layout = GAN_LAYOUT

    @classmethod
    def register(cls, subparsers) -> argparse.ArgumentParser:
        p = subparsers.add_parser(cls.name, help=cls.help, description=cls.description,
                                  argument_default=argparse.SUPPRESS)
        add_settings(p, cls.config_class, cls.layout)
        p.set_defaults(command=cls())
        return p

    @classmethod
    def settings(cls, args: argparse.Namespace):
        """(config, names of the settings given) from the parsed ``args``."""
        return settings(cls.config_class, args)

    def run(self, args: argparse.Namespace) -> int:
        config, given = self.settings(args)
        return train_gan(config, given=given)


class TrainStyleEncoderCommand(TrainCommand):
    name = "train-style-encoder"
    help = "contrastive (SimCLR) training of the Gram-matrix style encoder"
    description = ("Self-supervised training of the style encoder on a folder of artworks. Output: "
                   "OUTDIR/checkpoints/latest.pt with the 'style_encoder' weights (the generator's "
                   "embedder.* keys), for `blendgan train --style-encoder`. On --resume, flags not given "
                   "take the checkpoint's values.")
    config_class = StyleEncoderConfig
    layout = STYLE_ENCODER_LAYOUT

    def run(self, args: argparse.Namespace) -> int:
        config, given = self.settings(args)
        return train_style_encoder(config, given=given)
