"""Feature networks for the distances of :mod:`.distances`: images -> one vector each.

* ``"inception"``: the standard FID/KID features, Inception-v3's 2048-d pool features as
  torch-fidelity computes them (``pip install torch-fidelity``; its weights are fetched once
  into torch's hub cache, or read from a file given as ``weights``);
* any ``torch.nn.Module`` mapping images [N, 3, S, S] in [-1, 1] to features [N, ...] (flattened),
  given as an object or as ``"package.module:name"`` (a module, or a callable that builds one
  with no arguments): for offline use and tests.

A feature network is called on RGB uint8 images [N, H, W, 3] and returns float64 [N, D].
"""
from __future__ import annotations

import importlib
from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import io
from ..errors import DependencyError, UsageError

INCEPTION = "inception"


class FeatureNetwork:
    """A named map from RGB uint8 images [N, H, W, 3] to features [N, D] (float64), in batches."""

    def __init__(self, name: str, fn: Callable[[np.ndarray], torch.Tensor], batch: int = 32):
        self.name = name
        self.fn = fn
        self.batch = batch

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        parts = [self.fn(images[i:i + self.batch]).flatten(1).double().cpu().numpy()
                 for i in range(0, len(images), self.batch)]
        return np.concatenate(parts) if parts else np.zeros((0, 0))


def module_features(module: nn.Module, name: str, device: torch.device | str = "cpu",
                    batch: int = 32) -> FeatureNetwork:
    """A module taking [N, 3, H, W] in [-1, 1] as a :class:`FeatureNetwork`."""
    module = module.to(device).eval()
    return FeatureNetwork(name, lambda x: module(io.to_tensor(x, device)), batch)


def inception_features(device: torch.device | str = "cpu", weights: str | None = None,
                       batch: int = 32) -> FeatureNetwork:
    """torch-fidelity's Inception-v3 (``inception-v3-compat``), 2048-d features of uint8 images."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise DependencyError("the Inception features need torch-fidelity: pip install torch-fidelity "
                              "(or blendgan[eval])") from None
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
    except (OSError, RuntimeError, ValueError) as exc:  # no network, a damaged file
        where = weights or "torch's hub cache (fetched from the internet on first use)"
        raise DependencyError(f"could not load the Inception-v3 weights from {where}: {exc}") from None
    net = net.to(device).eval()

    def run(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
        return net(x)[0]
    return FeatureNetwork(INCEPTION, run, batch)


def load_module(spec: str) -> nn.Module:
    """``"package.module:name"`` -> the module it names (built by calling it when it is a callable)."""
    modname, _, attr = spec.partition(":")
    if not modname or not attr:
        raise UsageError(f"--features {spec!r}: expected 'inception' or 'package.module:name'")
    try:
        obj = getattr(importlib.import_module(modname), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--features {spec!r}: {exc}") from None
    if not isinstance(obj, nn.Module):
        obj = obj()
    if not isinstance(obj, nn.Module):
        raise UsageError(f"--features {spec!r}: gives a {type(obj).__name__}, not a torch.nn.Module")
    return obj


def feature_network(spec: str | nn.Module | FeatureNetwork = INCEPTION, device: torch.device | str = "cpu",
                    weights: str | None = None, batch: int = 32) -> FeatureNetwork:
    """The feature network named by ``spec`` (see the module's doc)."""
    if isinstance(spec, FeatureNetwork):
        return spec
    if isinstance(spec, nn.Module):
        return module_features(spec, type(spec).__name__, device, batch)
    if spec == INCEPTION:
        return inception_features(device, weights, batch)
    return module_features(load_module(spec), spec, device, batch)
