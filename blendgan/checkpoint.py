"""Loading and validating the official checkpoints (and ours, which share the layout).

* ``blendgan.pt``: ``{'g_ema': state_dict, 'latent_avg': [1, 512]?, 'truncation': float?, ...}``
  or a bare generator state dict.
* ``psp_encoder.pt``: ``{'state_dict': {'encoder.*': ...}, 'latent_avg': [n_latent, 512] or [512]}``
  or a bare state dict (with or without the ``encoder.`` prefix).

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never pickled code.  The network configuration (resolution, channel multiplier, mapping
depth) is inferred from tensor shapes, then every key and shape is checked, so a wrong or
damaged file gives one line naming the file and what is wrong.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError
from .io.files import atomic_path, file_kind
from .models import Generator, PSPEncoder
from .models.arcface import IdentityNet

# The one table of key renamings applied on load: (pattern, replacement).  Official files
# need none; these cover common re-saves (DataParallel / DDP wrappers, torch.compile).
KEY_RENAMES = (
    (re.compile(r"^module\."), ""),
    (re.compile(r"^_orig_mod\."), ""),
)

GET_WEIGHTS_HINT = "get the official weights with `blendgan download` (see pretrained_models/README.md)"


@dataclass(frozen=True)
class GeneratorConfig:
    size: int
    style_dim: int
    n_mlp: int
    channel_multiplier: int
    style_encoder: bool
    channels: tuple[tuple[int, int], ...] = ()  # (resolution, width) pairs read from the weights

    @property
    def n_latent(self) -> int:
        """W+ layers: 2·log2(size) − 2."""
        return 2 * (self.size.bit_length() - 1) - 2


def _short(keys, limit: int = 3) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_file(path: str | os.PathLike) -> object:
    """``torch.load`` with ``weights_only=True`` (memory-mapped when possible).

    Raises :class:`CheckpointError` for a missing, truncated, corrupt or code-carrying file.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind == "missing":
        raise CheckpointError(f"{path}: no such file; {GET_WEIGHTS_HINT}")
    if kind == "a folder":
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    if kind is not None:  # a FIFO would block the reader forever, a device never end
        raise CheckpointError(f"{path}: is {kind}, expected a checkpoint file")
    try:
        # training checkpoints of the official train.py keep their argparse options beside the
        # weights; a Namespace only holds attributes, so it is allowed (nothing else is)
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):  # legacy (non-zip) files cannot be memory-mapped
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointError(f"{path}: refused: it contains a pickled Python object ({found.group(1)}), "
                                  "which could run code; only tensors and plain containers are loaded "
                                  "(weights_only=True)") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?)") from None
    except Exception as exc:  # unpickling garbage can raise nearly anything
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {first}") from None


def canonical_key(key: str) -> str:
    """A state-dict key with the renamings of :data:`KEY_RENAMES` applied."""
    for pattern, repl in KEY_RENAMES:
        key = pattern.sub(repl, key)
    return key


def save_file(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (:func:`blendgan.io.atomic_path`); a failed
    write (a full disk ...) is an ``OSError`` of one line naming ``path``."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: write errors keep their errno
            torch.save(obj, f)
    except (OSError, RuntimeError) as exc:
        # torch's zip writer can turn the file's OSError into its own RuntimeError on the way out
        cause = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise OSError(cause.errno, f"{path}: cannot write ({cause.strerror or cause})") from None
    return path


def _rename(sd: dict, path) -> dict:
    out = {}
    for key, value in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: state dict key {key!r} is a {type(key).__name__}, expected a name")
        out[canonical_key(key)] = value
    return out


def weights_fingerprint(module: nn.Module, salt: str = "", length: int = 16) -> str:
    """Hex digest (``length`` characters) of every tensor of ``module``'s state dict: names,
    shapes and float32 values, after ``salt``.  Equal weights give equal prints on any device
    and in any dtype that holds them exactly."""
    digest = hashlib.sha256(salt.encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{tuple(t.shape)}".encode())
        if t.numel():
            digest.update(memoryview(t.numpy()).cast("B"))
    return digest.hexdigest()[:length]


def _as_state_dict(obj, path, container_keys: tuple[str, ...], probe: str) -> tuple[dict, dict]:
    """Split a loaded file into (state_dict, extras) given where the weights may live."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    for key in container_keys:
        if key in obj:
            sd = obj[key]
            if not isinstance(sd, dict):
                raise CheckpointError(f"{path}: '{key}' is a {type(sd).__name__}, expected a state dict")
            return _rename(sd, path), {k: v for k, v in obj.items() if k != key}
    sd = _rename({k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}, path)
    if not any(probe in k for k in sd):
        found = ", ".join(repr(k) for k in list(obj)[:5])
        raise CheckpointError(f"{path}: no {' or '.join(repr(k) for k in container_keys)} entry and no "
                              f"weights like '{probe}' (top-level keys: {found})")
    return sd, {k: v for k, v in obj.items() if not isinstance(v, torch.Tensor) or k == "latent_avg"}


def _float32(sd: dict) -> dict:
    return {k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v for k, v in sd.items()}


def _check_and_assign(module: nn.Module, sd: dict, path, what: str) -> None:
    """Verify keys and shapes against ``module`` (built on the meta device), then assign."""
    expected = module.state_dict()
    missing = set(expected) - set(sd)
    unexpected = set(sd) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_short(unexpected)}")
        raise CheckpointError(f"{path}: not a valid {what}: {'; '.join(parts)}")
    wrong = [k for k in expected if not isinstance(sd[k], torch.Tensor) or tuple(sd[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        got = tuple(sd[k].shape) if isinstance(sd[k], torch.Tensor) else type(sd[k]).__name__
        raise CheckpointError(f"{path}: not a valid {what}: {len(wrong)} tensor(s) with the wrong shape, "
                              f"e.g. {k!r} is {got}, expected {tuple(expected[k].shape)}")
    wrong = [k for k in expected if sd[k].is_floating_point() != expected[k].is_floating_point()]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{path}: not a valid {what}: {len(wrong)} tensor(s) of the wrong kind, "
                              f"e.g. {k!r} is {sd[k].dtype}, expected {expected[k].dtype}")
    # damaged bytes inside a well-formed file show up as NaN/inf weights, which would only
    # produce black or garbage images; a float64 sum is finite exactly when every value is
    # (and ~10x faster than an elementwise isfinite)
    bad = [k for k in expected if sd[k].is_floating_point()
           and not bool(torch.isfinite(sd[k].sum(dtype=torch.float64)))]
    if bad:
        raise CheckpointError(f"{path}: not a valid {what}: {len(bad)} tensor(s) hold NaN or infinite values, "
                              f"e.g. {bad[0]!r} (damaged file?)")
    module.load_state_dict(sd, strict=True, assign=True)


def infer_generator_config(sd: dict, path="checkpoint") -> GeneratorConfig:
    """Resolution, widths and mapping depth of a generator state dict, from tensor shapes."""
    try:
        n_rgbs = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
        size = 2 ** (n_rgbs + 2)
        style_dim = int(sd["style.1.weight"].shape[0])
        n_mlp = len({k.split(".")[1] for k in sd if re.match(r"^style\.\d+\.weight$", k)})
        channels = {4: int(sd["input.input"].shape[1])}
        channels.update({2 ** (i + 3): int(sd[f"to_rgbs.{i}.conv.weight"].shape[2]) for i in range(n_rgbs)})
        channel_multiplier = max(1, channels[64] // 256) if size >= 64 else 2
    except (KeyError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a BlendGAN generator: cannot read its configuration "
                              f"(missing {exc})") from None
    if n_rgbs < 1 or n_mlp < 1:
        raise CheckpointError(f"{path}: not a BlendGAN generator: no 'to_rgbs.*' or 'style.*' layers")
    return GeneratorConfig(size=size, style_dim=style_dim, n_mlp=n_mlp,
                           channel_multiplier=channel_multiplier,
                           style_encoder=any(k.startswith("embedder.") for k in sd),
                           channels=tuple(sorted(channels.items())))


def generator_config(path: str | os.PathLike) -> GeneratorConfig:
    """The configuration of ``blendgan.pt`` read from its tensors' names and shapes, without
    loading the weights (the file is memory-mapped)."""
    sd, _ = _as_state_dict(load_file(path), path, ("g_ema",), "to_rgbs.")
    return infer_generator_config(sd, path)


def n_latent_to_size(n_latent: int) -> int:
    """Output resolution for a W+ length (inverse of ``2·log2(size) − 2``)."""
    return 2 ** ((n_latent + 2) // 2)


def _meta_build(cls, *args, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return cls(*args, **kwargs)


@dataclass
class GeneratorCheckpoint:
    generator: Generator
    latent_avg: torch.Tensor | None  # [1, style_dim]
    truncation: float | None
    config: GeneratorConfig


def load_generator(path: str | os.PathLike, size: int | None = None,
                   channel_multiplier: int | None = None) -> GeneratorCheckpoint:
    """Load ``blendgan.pt`` (or a bare generator state dict) on the CPU.

    ``size`` / ``channel_multiplier``, when given, must agree with the file.
    """
    obj = load_file(path)
    sd, extras = _as_state_dict(obj, path, ("g_ema",), "to_rgbs.")
    config = infer_generator_config(sd, path)
    if size is not None and size != config.size:
        raise CheckpointError(f"{path}: is a {config.size}px generator but --size {size} was given")
    if channel_multiplier is not None and channel_multiplier != config.channel_multiplier:
        raise CheckpointError(f"{path}: has channel multiplier {config.channel_multiplier} but "
                              f"{channel_multiplier} was given")
    gen = _meta_build(Generator, config.size, style_dim=config.style_dim, n_mlp=config.n_mlp,
                      channel_multiplier=config.channel_multiplier, style_encoder=config.style_encoder,
                      channels=dict(config.channels))
    _check_and_assign(gen, _float32(sd), path, f"{config.size}px BlendGAN generator")
    latent_avg = extras.get("latent_avg")
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != config.style_dim:
            raise CheckpointError(f"{path}: 'latent_avg' should hold {config.style_dim} values, found "
                                  f"{tuple(getattr(latent_avg, 'shape', ()))}")
        latent_avg = latent_avg.float().reshape(1, config.style_dim)
        if not bool(torch.isfinite(latent_avg).all()):
            raise CheckpointError(f"{path}: 'latent_avg' holds NaN or infinite values (damaged file?)")
    truncation = extras.get("truncation")
    if truncation is not None:
        try:
            truncation = float(truncation)
        except (TypeError, ValueError, RuntimeError):
            raise CheckpointError(f"{path}: 'truncation' is not a number: {truncation!r}") from None
        if not math.isfinite(truncation):
            raise CheckpointError(f"{path}: 'truncation' is {truncation}, expected a finite number")
    return GeneratorCheckpoint(gen.eval().requires_grad_(False), latent_avg, truncation, config)


def _psp_latent_avg(value, n_latent: int, path) -> torch.Tensor:
    """Accept [512], [1, 512], [n_latent, 512] or [1, n_latent, 512] -> [n_latent, 512]."""
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{path}: no 'latent_avg' tensor (pSp encoders add it to their output)")
    v = value.float()
    if v.ndim == 3 and v.shape[0] == 1:
        v = v[0]
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[1] != 512 or v.shape[0] not in (1, n_latent):
        raise CheckpointError(f"{path}: 'latent_avg' has shape {tuple(value.shape)}, expected [512] or "
                              f"[{n_latent}, 512]")
    if not bool(torch.isfinite(v).all()):
        raise CheckpointError(f"{path}: 'latent_avg' holds NaN or infinite values (damaged file?)")
    return v.expand(n_latent, 512).contiguous()


def load_psp(path: str | os.PathLike, n_latent: int | None = None) -> PSPEncoder:
    """Load ``psp_encoder.pt`` on the CPU; ``n_latent`` (from the generator) is checked."""
    obj = load_file(path)
    sd, extras = _as_state_dict(obj, path, ("state_dict",), "styles.")
    if not any(k.startswith("encoder.") for k in sd):
        sd = {f"encoder.{k}" if k != "latent_avg" else k: v for k, v in sd.items()}
    latent_avg = sd.pop("latent_avg", None)
    latent_avg = extras.get("latent_avg", latent_avg)
    n_styles = len({k.split(".")[2] for k in sd if re.match(r"^encoder\.styles\.\d+\.linear\.weight$", k)})
    if n_styles == 0:
        raise CheckpointError(f"{path}: not a pSp encoder: no 'encoder.styles.*' layers")
    if n_latent is not None and n_styles != n_latent:
        raise CheckpointError(f"{path}: pSp encoder for {n_latent_to_size(n_styles)}px ({n_styles} styles) "
                              f"does not match the {n_latent_to_size(n_latent)}px generator ({n_latent} styles)")
    sd = _float32(sd)
    sd["latent_avg"] = _psp_latent_avg(latent_avg, n_styles, path)
    enc = _meta_build(PSPEncoder, n_styles)
    _check_and_assign(enc, sd, path, "pSp encoder (IR-SE50)")
    return enc.eval().requires_grad_(False)


def load_identity(path: str | os.PathLike) -> IdentityNet:
    """Load an ArcFace IR-SE50 file (``model_ir_se50.pth``, a plain state dict) on the CPU."""
    obj = load_file(path)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected the state dict of an ArcFace IR-SE50 model (model_ir_se50.pth)")
    net = _meta_build(IdentityNet)
    _check_and_assign(net, _float32(dict(obj)), path, "ArcFace IR-SE50 model")
    return net.eval().requires_grad_(False)


def summarize(path: str | os.PathLike) -> str:
    """One line describing a checkpoint file (used by ``blendgan info`` and ``download``)."""
    obj = load_file(path)
    if isinstance(obj, dict) and ("state_dict" in obj or any("styles." in k for k in obj)):
        enc = load_psp(path)
        return f"pSp encoder, {enc.n_latent} styles ({n_latent_to_size(enc.n_latent)}px)"
    ck = load_generator(path)
    c = ck.config
    return (f"BlendGAN generator {c.size}px, channel multiplier {c.channel_multiplier}, "
            f"style encoder {'yes' if c.style_encoder else 'no'}, "
            f"latent_avg {'yes' if ck.latent_avg is not None else 'no'}"
            + (f", truncation {ck.truncation}" if ck.truncation is not None else ""))
