"""Style-encoder weights for training: reading them from every file layout we know, copying
them into a :class:`~blendgan.models.StyleEncoder`, and the random VGG fallback.

Key layout of the result: ``embedder.feature_extractor.vgg_layers.<i>.*`` (VGG19, frozen) and
``embedder_mlp.<j>.*`` (the trained MLP), i.e. the generator's ``embedder.*`` keys without the
``embedder.`` prefix.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ..checkpoint import canonical_key, load_file
from ..errors import CheckpointError, TrainError

VGG_PREFIX = "embedder.feature_extractor.vgg_layers."
MLP_PREFIX = "embedder_mlp."


def normalise_encoder_keys(sd: dict) -> dict:
    """Map the layouts we accept onto :class:`~blendgan.models.StyleEncoder` keys; other
    entries (a VGG classifier, non-tensors) are dropped."""
    out = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = canonical_key(key)
        if key.startswith("features."):          # torchvision vgg19().state_dict()
            key = VGG_PREFIX + key[len("features."):]
        elif "feature_extractor.vgg_layers." in key:
            key = VGG_PREFIX + key.split("feature_extractor.vgg_layers.", 1)[1]
        elif "embedder_mlp." in key:
            key = MLP_PREFIX + key.split("embedder_mlp.", 1)[1]
        else:
            continue
        out[key] = value
    return out


def load_style_encoder_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Style-encoder weights from any file we know, with :class:`StyleEncoder` keys.

    Accepted: ``train-style-encoder`` output (``'style_encoder'`` entry), a generator
    checkpoint (``'g_ema'`` with ``embedder.*``, e.g. the official ``blendgan.pt``), a bare
    state dict with or without prefixes, or torchvision's ``vgg19`` state dict
    (``features.<i>.*``, VGG part only).  The result may hold only the VGG part.
    """
    try:
        obj = load_file(path)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    if not isinstance(obj, dict):
        raise TrainError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if isinstance(obj.get("style_encoder"), dict):
        sd = obj["style_encoder"]
    elif isinstance(obj.get("g_ema"), dict):
        sd = {k[len("embedder."):]: v for k, v in obj["g_ema"].items() if k.startswith("embedder.")}
    elif isinstance(obj.get("state_dict"), dict):
        sd = obj["state_dict"]
    else:
        sd = obj
    sd = normalise_encoder_keys(sd)
    if not sd:
        raise TrainError(f"{path}: no style-encoder weights found (expected 'embedder_mlp.*' and/or VGG19 "
                         f"'feature_extractor.vgg_layers.*' / torchvision 'features.*' keys)")
    return sd


def has_complete_vgg(encoder: nn.Module, sd: dict) -> bool:
    """Whether ``sd`` holds every VGG19 tensor of ``encoder``."""
    return all(k in sd for k in encoder.state_dict() if k.startswith(VGG_PREFIX))


def assign_style_encoder(encoder: nn.Module, sd: dict, path, need_mlp: bool) -> tuple[bool, bool]:
    """Copy the VGG and (if present) MLP weights of ``sd`` into ``encoder``; returns (vgg, mlp) found."""
    expected = encoder.state_dict()
    vgg_keys = [k for k in expected if k.startswith(VGG_PREFIX)]
    mlp_keys = [k for k in expected if k.startswith(MLP_PREFIX)]
    has_vgg = all(k in sd for k in vgg_keys)
    has_mlp = all(k in sd for k in mlp_keys)
    if need_mlp and not has_mlp:
        raise TrainError(f"{path}: has no complete style-encoder MLP ('embedder_mlp.*')")
    use = (vgg_keys if has_vgg else []) + (mlp_keys if has_mlp else [])
    if not use:
        raise TrainError(f"{path}: neither the complete VGG19 nor the complete MLP of a style encoder")
    for k in use:
        if tuple(sd[k].shape) != tuple(expected[k].shape):
            raise TrainError(f"{path}: style-encoder tensor {k!r} is {tuple(sd[k].shape)}, expected "
                             f"{tuple(expected[k].shape)} (does --style-dim match?)")
    encoder.load_state_dict({k: sd[k].float() for k in use}, strict=False)
    return has_vgg, has_mlp


@torch.no_grad()
def init_vgg_random(encoder: nn.Module) -> None:
    """He-normal (fan-in) VGG convolutions with zero biases: the fallback when no VGG19 weights
    are available.  Unlike PyTorch's default init it keeps activations at scale through the 16
    layers, so the Gram vectors are not vanishingly small.  Draws from the global RNG: call
    inside :func:`blendgan.runtime.seeded_init`."""
    for m in encoder.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
