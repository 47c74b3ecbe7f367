"""``blendgan pairs``: random faces, natural and stylized side by side."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .. import defaults, io
from ..checkpoint import load_file
from ..controls import Strength, check_strength, check_style_weights
from ..errors import UsageError
from ..model import BlendGAN
from ..runtime import Shard, make_generator
from ..synthesis import batches, face_codes, sample_zs, stylized_pairs
from .report import BackgroundWriter, JobReport, claim_outdir, model_tag, out_path, overlapped, writer_threads


def load_sample_zs(path: str | Path, pics: int, dim: int = 512) -> torch.Tensor:
    """Face codes saved with ``torch.save`` (see :func:`blendgan.synthesis.face_codes`) -> [pics, dim]."""
    if not Path(path).is_file():
        raise UsageError(f"{path}: no such file (expected face codes saved with torch.save)")
    return face_codes(load_file(path), pics, dim, str(path))


@torch.inference_mode()
def run_pairs(model: BlendGAN, outdir: str | Path, pics: int = defaults.PAIRS_PICS,
              style_image: str | Path | Sequence[str | Path] | None = None, zs: torch.Tensor | None = None,
              truncation: float | None = None, truncation_mean: int = defaults.TRUNCATION_MEAN,
              add_weight_index: int | None = defaults.PAIRS_ADD_WEIGHT_INDEX, seed: int = defaults.SEED,
              batch_size: int = defaults.BATCH_SIZE, fmt: str = defaults.FORMAT, overwrite: bool = False,
              progress: bool = True, shard: Shard = Shard(), strength: Strength = defaults.STRENGTH,
              preserve_color: bool = False, style_weights: Sequence[float] | None = None) -> JobReport:
    """Write ``{i:06d}.{fmt}`` = [natural | stylized] for ``pics`` random faces.

    The style is ``style_image`` (embedded at its own size; several images are mixed by
    ``style_weights``, default uniform) or a random style code.  ``strength`` and
    ``preserve_color``: see :mod:`blendgan.controls`.  The random draws follow the official
    script: the truncation mean (only without a stored ``latent_avg``), then the style code,
    then one face code per picture.  With a ``shard``, this process writes its batches only
    (all codes are still drawn, so every image is the one a single process would write).
    """
    check_strength(strength, model.n_latent)
    images = [style_image] if isinstance(style_image, (str, os.PathLike)) else list(style_image or ())
    if images:
        check_style_weights(style_weights, len(images))
    elif style_weights is not None:
        raise UsageError("style weights need style images to mix")
    outdir = io.prepare_outdir(outdir)
    report = JobReport()
    g = make_generator(seed, model.device)
    t = model.default_truncation if truncation is None else truncation
    t_latent = model.truncation_latent(truncation_mean, g) if t < 1 else None
    if images:
        codes = [model.embed_style(io.to_tensor(io.read_image(path), model.device)) for path in images]
        z_style = codes[0] if len(codes) == 1 else torch.stack(codes, dim=1)  # [1, K, 512]
    else:
        z_style = torch.randn(1, model.generator.style_dim, generator=g, device=model.device)
    dim = model.generator.style_dim
    given = zs is not None
    zs = sample_zs(pics, g, dim) if zs is None else face_codes(zs, pics, dim).to(model.device)
    claim_outdir(outdir, "pairs", {
        "model": model_tag(model), "seed": seed, "truncation": t, "truncation_mean": truncation_mean,
        "add_weight_index": add_weight_index, "style_images": [Path(p).name for p in images],
        "style_weights": style_weights, "strength": strength, "preserve_color": preserve_color,
        "face_codes": hashlib.sha256(zs.cpu().numpy().tobytes()).hexdigest()[:16] if given else None,
    }, overwrite)
    paths = [out_path(outdir, f"{i:06d}", fmt) for i in range(pics)]
    # Batches are fixed by index, not by what is on disk: a resumed or sharded run computes
    # each image in the batch a fresh single-process run computes it in (the same bytes).
    mine = [list(range(pics))[sl] for k, sl in enumerate(batches(pics, batch_size)) if shard.mine(k)]
    present = {i: not overwrite and io.is_done(paths[i]) for chunk in mine for i in chunk}
    report.skipped = [paths[i] for chunk in mine for i in chunk if present[i]]
    chunks = [chunk for chunk in mine if not all(present[i] for i in chunk)]

    def made():
        """Per chunk: its indices and the started host copies of both panels."""
        for chunk in chunks:
            for _, natural, stylized in stylized_pairs(model, zs[chunk], z_style, truncation=t,
                                                       add_weight_index=add_weight_index,
                                                       truncation_latent=t_latent, batch_size=len(chunk),
                                                       strength=strength, preserve_color=preserve_color,
                                                       style_weights=style_weights):
                yield chunk, io.to_uint8_async(natural), io.to_uint8_async(stylized)

    total = sum(not present[i] for chunk in chunks for i in chunk)
    with tqdm(total=total, desc="pairs", unit="img", disable=not progress) as bar, \
            BackgroundWriter(report, writer_threads(model.device)) as writer:
        for chunk, natural, stylized in overlapped(made(), model.device):
            for i, a, b in zip(chunk, natural(), stylized()):
                if not present[i]:
                    writer.submit(paths[i], io.write_image, paths[i], io.hstack([a, b]), fmt)
                    bar.update(1)
    return report
