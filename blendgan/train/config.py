"""The settings of a training run: one dataclass per trainer, every default and help text once.

:class:`GANConfig` (``blendgan train``) and :class:`StyleEncoderConfig`
(``blendgan train-style-encoder``) share :class:`RunConfig`, the settings of where and how a
run goes (folders, seed, device, checkpoint and log intervals).  Each field's ``metadata``
carries the command line's help text (``%(default)s`` stands for the default) and, where the
flag is not ``--field-name``, its spelling; :mod:`blendgan.cli.train` builds its flags from them.

A config is built once, at the edge, and settled by the trainer before the run starts
(:func:`resumed`: on ``--resume`` the settings not given take the checkpoint's values), then
saved as ``OUTDIR/config.json`` (:func:`save`) and in every checkpoint's ``'args'`` entry (a
plain dict, :meth:`RunConfig.to_dict`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeVar

from .. import io
from ..errors import TrainError
from ..models.style_encoder import STYLE_POOL

log = logging.getLogger("blendgan")

C = TypeVar("C", bound="RunConfig")

#: the file beside the results that records the settled settings of the run
CONFIG_FILE = "config.json"

#: settings that describe one invocation (where, on what, how verbosely): never taken from a
#: resumed checkpoint (``cache`` is, when not given and the folder still exists: see :func:`resumed`)
RUN_SETTINGS = frozenset({"resume", "outdir", "device", "workers", "quiet", "tensorboard", "cache", "init"})


def setting(default: Any, help: str, **flag: Any) -> Any:
    """A config field with its command-line help text; ``flag`` may set ``flag`` (the option
    string, default ``--field-name``), ``metavar``, ``choices`` and, for a bool that defaults
    to true, ``negate=True`` (the flag turns the setting off)."""
    return field(default=default, metadata={"help": help, **flag})


@dataclass(frozen=True)
class RunConfig:
    """Where and how a training run goes; the settings both trainers share."""
    outdir: str | None = setting(
        None, "run folder: checkpoints/, log.jsonl, samples/, tb/ (default with --resume: its run folder)")
    resume: str | None = setting(
        None, "continue from a checkpoint file or run folder (its checkpoints/latest.pt)", metavar="PATH")
    cache: str | None = setting(
        None, "keep the resized dataset as memory-mapped uint8 .npy files here (built once)", metavar="DIR")
    workers: int = setting(4, "threads decoding/augmenting images (default %(default)s)")
    seed: int = setting(0, "base seed of every random stream (default %(default)s)")
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda, cuda:N")
    save_every: int = setting(1000, "checkpoint every N steps (default %(default)s)")
    keep: int = setting(3, "step checkpoints kept, 0 = all (default %(default)s)")
    log_every: int = setting(10, "log losses every N steps (default %(default)s)")
    tensorboard: str = setting("auto", "TensorBoard scalars in OUTDIR/tb (auto: when the package is installed)",
                               choices=("auto", "on", "off"))
    quiet: bool = setting(False, "no progress bar")

    #: settings that fix the networks' shapes: on resume a given one must equal the checkpoint's
    ARCHITECTURE = frozenset()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (str/int/float/bool/None), for ``weights_only`` checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """A config from :meth:`to_dict`'s output; keys that are no setting of ``cls`` are ignored."""
        known = set(cls.names())
        return cls(**{k: v for k, v in values.items() if k in known})

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class GANConfig(RunConfig):
    """``blendgan train``: BlendGAN on a face folder and an artwork folder (:mod:`.gan`)."""
    # data
    faces: str | None = setting(None, "folder of aligned face images")
    styles: str | None = setting(None, "folder of aligned artistic face images (artworks)")
    style_encoder: str | None = setting(
        None, "frozen style encoder: train-style-encoder output, blendgan.pt or style_encoder.pt "
              "(default: random, with a warning)", metavar="PATH")
    style_pool: int = setting(
        STYLE_POOL, "VGG input size for the style codes; 256 as at inference (smaller only for quick tests)")
    flip: bool = setting(True, "no random left-right mirroring of reals", flag="--no-flip", negate=True)
    # architecture
    size: int = setting(1024, "resolution (default %(default)s)")
    style_dim: int = setting(512, "latent width (default %(default)s)")
    n_mlp: int = setting(8, "layers of each mapping network (default %(default)s)")
    channel_multiplier: int = setting(2, "config-F widths (default %(default)s)")
    channels: str | None = setting(None, "explicit widths from 4px up, e.g. 32,32,16,16 for a tiny 32px model")
    init: str | None = setting(
        None, "start from a checkpoint's weights (g_ema/g/d...: e.g. blendgan.pt or a StyleGAN2 one)",
        metavar="PATH")
    # optimisation
    batch: int = setting(4, "faces (and artworks) per process per step (default %(default)s)")
    kimg: float = setting(25000, "budget in thousands of real faces shown (default %(default)s)")
    lr: float = setting(0.002, "Adam learning rate (default %(default)s)")
    r1: float = setting(10.0, "R1 gamma, 0 disables (default %(default)s)")
    d_reg_every: int = setting(16, "lazy R1 interval (default %(default)s)")
    path_regularize: float = setting(2.0, "path-length weight, 0 disables (default %(default)s)")
    g_reg_every: int = setting(4, "lazy path-length interval (default %(default)s)")
    path_batch_shrink: int = setting(2, "path-length batch divisor (default %(default)s)")
    pl_decay: float = setting(0.01, "path-length mean decay (default %(default)s)")
    mixing: float = setting(0.9, "style-mixing probability (default %(default)s)")
    style_only: float = setting(
        0.0, "fraction of stylized samples made by the style branch alone (blend weight 0), so that "
             "the style branch learns while the learned blend is still near pure face (default %(default)s, "
             "the official)")
    style_mapping_lr: float = setting(
        1.0, "learning-rate multiplier of the style mapping network, whose equalized rate is 0.01 of the "
             "synthesis's (default %(default)s, the official; more lets short runs learn the style branch)")
    ema_kimg: float = setting(10.0, "g_ema half-life in kimg (default %(default)s)")
    face_weight: float = setting(1.0, "weight of the face GAN loss (default %(default)s)")
    style_weight: float = setting(1.0, "weight of the style GAN loss (default %(default)s)")
    proj_weight: float = setting(1.0, "weight of the projection-discriminator loss (default %(default)s)")
    mismatch_weight: float = setting(
        1.0, "weight of mismatched (artwork, other style code) negatives, 0 disables (default %(default)s)")
    fp16: bool = setting(False, "mixed precision for the discriminators (CUDA only)")
    # run
    sample_every: int = setting(500, "sample grid every N steps, 0 = never (default %(default)s)")
    n_sample: int = setting(8, "faces per sample grid row (default %(default)s)")
    n_sample_styles: int = setting(4, "stylized rows per grid (default %(default)s)")

    ARCHITECTURE = frozenset({"size", "style_dim", "n_mlp", "channel_multiplier", "channels"})

    def check(self) -> None:
        """Raise :class:`TrainError` for settings no run can start with."""
        check_size(self.size)
        if self.faces is None or self.styles is None:
            raise TrainError("give the face folder (--faces) and the artwork folder (--styles)")

    @property
    def channel_widths(self) -> dict[int, int] | None:
        """``channels`` as {resolution: width}, or None for the config-F widths."""
        return parse_channels(self.channels, self.size)


@dataclass(frozen=True)
class StyleEncoderConfig(RunConfig):
    """``blendgan train-style-encoder``: the contrastive style encoder on artworks (:mod:`.style_encoder`)."""
    data: str | None = setting(None, "folder of artworks (any size)")
    size: int = setting(256, "view size in pixels (default %(default)s)")
    load_size: int | None = setting(
        None, "images are loaded/cached at this square size before cropping (default: --size)")
    style_dim: int = setting(512, "style code width (default %(default)s, the official)")
    vgg: str | None = setting(
        None, "VGG19 weights: torchvision vgg19 state dict, blendgan.pt, or a style-encoder file", metavar="PATH")
    init: str | None = setting(None, "start the MLP (and VGG) from this style encoder", metavar="PATH")
    batch: int = setting(32, "artworks per process per step (default %(default)s)")
    lr: float = setting(2e-5, "Adam learning rate (default %(default)s; the equalized-lr MLP on raw Gram vectors "
                              "collapses to one code at GAN-like rates such as 0.002)")
    temperature: float = setting(0.2, "NT-Xent temperature (default %(default)s)")
    code_contrast: float = setting(
        0.0, "weight of a second NT-Xent on the style codes themselves, before the projection head (default "
             "%(default)s: SimCLR contrasts the projections only, and the codes of different artworks can stay "
             "nearly parallel, leaving the generator's style mapping and D_proj little to tell apart)")
    steps: int = setting(20000, "training steps (default %(default)s)")
    kimg: float | None = setting(None, "budget in thousands of artworks (overrides --steps)")
    crop_scale: float = setting(0.3, "smallest crop area fraction (default %(default)s)")
    rotate: float = setting(10.0, "max rotation in degrees (default %(default)s)")
    perspective: float = setting(0.05, "max corner shift, fraction (default %(default)s)")
    color_jitter: float = setting(
        0.0, "hue/saturation/value jitter of the views, 0-1 (default %(default)s: colour is style, as "
             "in the official; raise it when styles should be told apart by texture alone)")
    pool: int = setting(STYLE_POOL, "VGG input size; 256 as at inference (smaller only for quick tests)")

    ARCHITECTURE = frozenset({"style_dim"})

    def check(self) -> None:
        if self.data is None:
            raise TrainError("give the artwork folder with --data (or --resume a run)")


# -- checks ---------------------------------------------------------------------------------------
def parse_channels(text: str | None, size: int) -> dict[int, int] | None:
    """``"32,32,16,16"`` (widths from 4px upward, one per resolution up to ``size``) -> {4: 32, ...}."""
    if not text:
        return None
    try:
        widths = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise TrainError(f"--channels {text!r}: expected comma-separated integers, e.g. 32,32,16,16") from None
    n = int(math.log2(size)) - 1
    if len(widths) != n or min(widths) < 1:
        raise TrainError(f"--channels {text!r}: a {size}px model needs {n} positive widths "
                         f"(resolutions 4..{size}), got {len(widths)}")
    return {2 ** (i + 2): w for i, w in enumerate(widths)}


def check_size(size: int) -> None:
    if size < 8 or size > 1024 or size & (size - 1):
        raise TrainError(f"--size {size}: must be a power of two from 8 to 1024")


def flag_name(name: str) -> str:
    """The ``--flag`` that sets the field ``name`` (for messages)."""
    return "--" + name.replace("_", "-")


# -- settling -------------------------------------------------------------------------------------
def resumed(config: C, saved: dict, given: Iterable[str] = ()) -> C:
    """``config`` continued from a checkpoint whose ``'args'`` are ``saved``.

    Every setting not in ``given`` (those set explicitly, e.g. on the command line) takes the
    checkpoint's value, and so does a given one left at None; a given architecture setting
    (:attr:`RunConfig.ARCHITECTURE`) must equal the checkpoint's.  Invocation settings
    (:data:`RUN_SETTINGS`) stay, except ``cache``: when none is given the run's own data cache
    is reused if it still exists (without it a resume decodes every image again, and under DDP
    recomputes the style table, which can differ in the last bits).
    """
    given = frozenset(given)
    names = set(config.names())
    changes: dict[str, Any] = {}
    cache = saved.get("cache")
    if config.cache is None and cache and Path(cache).is_dir():
        changes["cache"] = cache
        log.info("resume: --cache %s (from the checkpoint)", cache)
    for key, value in saved.items():
        if key in RUN_SETTINGS or key.startswith("_") or key not in names:
            continue
        current = getattr(config, key)
        if key not in given or (current is None and value is not None and key not in config.ARCHITECTURE):
            changes[key] = value
        elif current != value:
            if key in config.ARCHITECTURE:
                raise TrainError(f"{flag_name(key)} {current} differs from the resumed run's {value}")
            log.info("resume: %s changed from %r to %r", flag_name(key), value, current)
    return config.replace(**changes)


def save(config: RunConfig, outdir: str | os.PathLike) -> Path:
    """Write ``outdir/config.json`` (atomically): the settings the run goes on with."""
    path = Path(outdir) / CONFIG_FILE
    with io.atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"kind": type(config).__name__, **config.to_dict()}, indent=2) + "\n")
    return path
