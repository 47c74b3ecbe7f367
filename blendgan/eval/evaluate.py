"""``blendgan eval``: the distances between folders of images, or between a checkpoint's samples
and folders, on a chosen feature network.

* :func:`compare`: FID and KID of two image sets [N, H, W, 3] uint8;
* :func:`evaluate_model`: natural samples against the face reference (FID, KID); with
  reference artworks also the stylized samples (every face under every artwork) against the
  artworks (FID, KID), their diversity (distance between one face's stylizations) and their
  style consistency (their style codes, from the model's own style encoder, against the codes
  of the artworks they were made with).
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .. import io
from ..errors import UsageError
from ..model import BlendGAN
from ..runtime import make_generator
from ..synthesis import batches
from .distances import frechet_distance, kernel_distance, pairwise_diversity, style_consistency
from .features import FeatureNetwork

log = logging.getLogger("blendgan")


@dataclass(frozen=True)
class KIDSettings:
    subsets: int = 100
    subset_size: int = 1000
    seed: int = 2020


def load_images(folder: str | os.PathLike, limit: int | None = None, size: int | None = None) -> np.ndarray:
    """RGB uint8 [N, size, size, 3]: the images of ``folder`` by name (the first ``limit``),
    resized to ``size`` (default: the first image's side, which must then be square)."""
    files = io.input_images(folder, "")
    images = []
    for f in files[:limit] if limit else files:
        img = io.read_image(f)
        if size is None:
            if img.shape[0] != img.shape[1]:
                raise UsageError(f"{f}: not square ({img.shape[1]}x{img.shape[0]}); give --size")
            size = img.shape[0]
        images.append(io.resize(img, size))
    return np.stack(images)


def compare_features(a: np.ndarray, b: np.ndarray, kid: KIDSettings = KIDSettings()) -> dict:
    """FID and KID between two feature sets [N, D]."""
    k = kernel_distance(a, b, kid.subsets, kid.subset_size, kid.seed)
    return {"fid": frechet_distance(a, b), "kid": k.mean, "kid_std": k.std, "kid_subset_size": k.subset_size,
            "n": len(a), "n_reference": len(b)}


def compare(images: np.ndarray, reference: np.ndarray, features: FeatureNetwork,
            kid: KIDSettings = KIDSettings()) -> dict:
    """FID and KID between two image sets (RGB uint8 [N, H, W, 3]) on ``features``."""
    return {**compare_features(features(images), features(reference), kid), "features": features.name}


@torch.no_grad()
def natural_samples(model: BlendGAN, n: int, seed: int = 0, batch: int = 16) -> np.ndarray:
    """``n`` natural faces of the model (codes z ~ N(0, I) from ``seed``, truncation off): uint8 [n, S, S, 3]."""
    gen = make_generator(seed)
    z = torch.randn(n, model.generator.style_dim, generator=gen)
    return np.concatenate([io.to_uint8(model.synthesize(z=z[s].to(model.device), truncation=1.0))
                           for s in batches(n, batch)])


@torch.no_grad()
def stylized_samples(model: BlendGAN, faces: int, styles: np.ndarray, seed: int = 0,
                     add_weight_index: int | None = None, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Every one of ``faces`` random faces under every artwork of ``styles`` (uint8 [R, H, W, 3]).

    Returns (images uint8 [faces, R, S, S, 3], style codes of the artworks [R, D]).
    """
    gen = make_generator(seed)
    z = torch.randn(faces, model.generator.style_dim, generator=gen).to(model.device)
    codes = torch.cat([model.embed_style(io.to_tensor(styles[s], model.device)) for s in batches(len(styles), batch)])
    out = np.empty((faces, len(styles), model.size, model.size, 3), np.uint8)
    for r in range(len(styles)):
        for s in batches(faces, batch):
            e = codes[r:r + 1].expand(s.stop - s.start, -1)
            out[s, r] = io.to_uint8(model.synthesize(z=z[s], z_embed=e, truncation=1.0,
                                                     add_weight_index=add_weight_index))
    return out, codes.cpu().numpy()


@torch.no_grad()
def style_codes(model: BlendGAN, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """The model's style codes of RGB uint8 images [N, H, W, 3]: [N, D]."""
    return torch.cat([model.embed_style(io.to_tensor(images[s], model.device)).cpu()
                      for s in batches(len(images), batch)]).numpy()


def evaluate_model(model: BlendGAN, reference: np.ndarray, features: FeatureNetwork, samples: int = 1000,
                   styles: np.ndarray | None = None, faces: int = 10, seed: int = 0,
                   add_weight_index: int | None = None, kid: KIDSettings = KIDSettings(),
                   batch: int = 16) -> dict:
    """The measures of a model (see the module's doc); ``styles``: reference artworks [R, H, W, 3], R >= 2."""
    report = {"natural": compare(natural_samples(model, samples, seed, batch), reference, features, kid)}
    if styles is not None:
        if len(styles) < 2:
            raise UsageError("the stylized measures need at least 2 reference artworks")
        images, ref_codes = stylized_samples(model, faces, styles, seed, add_weight_index, batch)
        flat = images.reshape(-1, *images.shape[2:])             # face-major: [faces·R, S, S, 3]
        feats = features(flat)
        stylized = {**compare_features(feats, features(styles), kid), "features": features.name}
        stylized["diversity"] = pairwise_diversity(feats.reshape(faces, len(styles), -1))
        consistency = style_consistency(style_codes(model, flat, batch), ref_codes,
                                        np.tile(np.arange(len(styles)), faces))
        stylized["style_consistency"] = asdict(consistency)
        report["stylized"] = stylized
    return report
