"""``train-style-encoder``: self-supervised contrastive training of the Gram-matrix style encoder.

Each artwork gives two colour-preserving views (random resized crop, flip, small rotation and
perspective; no colour jitter unless ``--color-jitter``: colour is style).  A frozen VGG19 turns each view into its
Gram vector g [610304]; the trainable 4-layer MLP of the style encoder (``embedder_mlp``)
maps it to the style code z_embed [style_dim]; a 4-layer projector head maps that to
p [style_dim], and the NT-Xent loss (SimCLR, :func:`~blendgan.train.losses.nt_xent`) pulls
the two views of an artwork together and pushes the other artworks of the batch (of every
process) apart.  With ``--code-contrast W`` a second NT-Xent on the codes z_embed themselves
(weight W) spreads them too: on the projections alone, the codes of different artworks can
stay nearly parallel (measured: mean cosine 0.97 on the toy artworks of
:mod:`blendgan.train.proof`, 0.49 with W = 1), and the generator's style mapping, whose
input is normalised, then sees almost one code.

Output: ``OUTDIR/checkpoints/{step:06d}.pt`` and ``latest.pt``, a dict
(``torch.load(weights_only=True)``)::

    'format'        'blendgan-style-encoder/1'
    'style_encoder' StyleEncoder state dict:
                      'embedder.feature_extractor.vgg_layers.<i>.{weight,bias}'  VGG19 (frozen)
                      'embedder_mlp.<j>.{weight,bias}', j = 0..3                  the trained MLP
                    = the generator's 'embedder.*' keys without the 'embedder.' prefix:
                      ``generator.embedder.load_state_dict(ckpt['style_encoder'])``
    'projector'     the projection head ('<j>.{weight,bias}', j = 0..3; training only)
    'optimizer', 'step', 'args' (plain dict), 'loader' (data position), 'world'

``blendgan train --style-encoder FILE`` accepts this file.
"""
from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..errors import TrainError
from ..models.style_encoder import StyleEncoder
from ..runtime import DistEnv, derive_seed, process_group, seeded_init
from . import losses
from .checkpoints import load_training_checkpoint, resolve_resume, run_folder
from .config import StyleEncoderConfig, resumed
from .data import BatchLoader, ViewConfig, open_source, random_view, to_float
from .encoder_weights import (VGG_PREFIX, assign_style_encoder, has_complete_vgg, init_vgg_random,
                              load_style_encoder_state)
from .loop import TrainingLoop
from .modules import ContrastiveHead, Projector, gram_vectors
from .monitor import format_rate

log = logging.getLogger("blendgan")

FORMAT = "blendgan-style-encoder/1"
ADAM_BETAS = (0.9, 0.99)


def train_style_encoder(config: StyleEncoderConfig, *, given: Iterable[str] = frozenset(),
                        callback: Callable[["StyleEncoderTrainer"], None] | None = None) -> int:
    """Train the style encoder (``blendgan train-style-encoder``); returns the exit status (130
    when stopped by a signal).  ``given``: the settings set explicitly; with ``config.resume``
    the others take the checkpoint's values (``style_dim``, if given, must match it)."""
    resume_path = resolve_resume(config.resume) if config.resume else None
    config = config.replace(outdir=run_folder(config.outdir, resume_path))
    saved = load_training_checkpoint(resume_path, FORMAT) if resume_path else None
    if saved is not None:
        config = resumed(config, saved["args"], frozenset(given))
    config.check()
    with process_group(config.device) as env:
        return StyleEncoderTrainer(config, env, saved, resume_path, callback).run()


def make_views(images: np.ndarray, cfg: ViewConfig, seed: int, step: int, first: int,
               pool: ThreadPoolExecutor) -> np.ndarray:
    """Two views of each image: uint8 [2B, S, S, 3], views 1 then views 2.

    View ``v`` of the image at global batch position ``first + i`` in step ``step`` uses its own
    generator seeded by ``(seed, step, first + i, v)``: no state to save, resumes exactly.
    """
    jobs = []
    for v in range(2):
        for i, img in enumerate(images):
            rng = np.random.default_rng([seed, step, first + i, v])
            jobs.append((img, rng))
    return np.stack(list(pool.map(lambda a: random_view(a[0], cfg, a[1]), jobs)))


def initial_weights(encoder: StyleEncoder, config: StyleEncoderConfig) -> None:
    """VGG19 from ``--vgg`` (and the MLP too from ``--init``); else warn: random VGG."""
    c = config
    if c.init:
        sd = load_style_encoder_state(c.init)
        has_vgg, _ = assign_style_encoder(encoder, sd, c.init, need_mlp=True)
        if not has_vgg and not c.vgg:
            log.warning("%s has no VGG19 weights and no --vgg was given: the VGG is random", c.init)
    if c.vgg:
        sd = load_style_encoder_state(c.vgg)
        if not has_complete_vgg(encoder, sd):
            raise TrainError(f"--vgg {c.vgg}: no complete VGG19 'features' weights in it")
        assign_style_encoder(encoder, {k: v for k, v in sd.items() if k.startswith(VGG_PREFIX)},
                             c.vgg, need_mlp=False)
    elif not c.init:
        log.warning("no --vgg given: the VGG19 of the style encoder is randomly initialised; its Gram "
                    "matrices are poor style features. Pass --vgg with torchvision's vgg19 weights "
                    "(vgg19-dcbb9e9d.pth) or a blendgan.pt / style-encoder file that carries them.")


class StyleEncoderTrainer(TrainingLoop):
    """One process of a ``train-style-encoder`` run."""

    config: StyleEncoderConfig

    def __init__(self, config: StyleEncoderConfig, env: DistEnv, saved: dict | None, resume_path,
                 callback=None):
        super().__init__(config, env, callback)
        c = config
        if c.batch < 2 and env.world < 2:
            raise TrainError("--batch must be at least 2 (the other artworks are the negatives)")
        with seeded_init(derive_seed(c.seed, "style-encoder-init")):
            self.encoder = StyleEncoder(style_dim=c.style_dim)
            init_vgg_random(self.encoder)  # replaced below when --vgg / --init / --resume give weights
            self.projector = Projector(c.style_dim)
        if saved is not None:
            self.encoder.load_state_dict(saved["style_encoder"])
            self.projector.load_state_dict(saved["projector"])
        else:
            initial_weights(self.encoder, c)
        self.encoder.embedder.requires_grad_(False).eval()
        self.encoder.to(env.device)
        self.projector.to(env.device)
        self.head = ContrastiveHead(self.encoder.embedder_mlp, self.projector)
        self.model: nn.Module = self.head
        if env.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.head, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        self.optim = torch.optim.Adam(self.head.parameters(), lr=c.lr, betas=ADAM_BETAS)

        source = open_source(c.data, c.load_size or c.size, "styles", c.cache, c.workers, env)
        self.loader = BatchLoader(source, c.batch, env, c.seed)
        if saved is not None:
            self.optim.load_state_dict(saved["optimizer"])
            for group in self.optim.param_groups:  # the saved group carries the old run's rate; the settings win
                group["lr"], group["betas"] = c.lr, ADAM_BETAS
            self.loader.load_state_dict(saved["loader"])
            self.step = int(saved["step"])
            log.info("resumed %s at step %d", resume_path, self.step)
        self.global_batch = c.batch * env.world
        self.total = c.steps if c.kimg is None else math.ceil(c.kimg * 1000 / self.global_batch)
        self.views = ViewConfig(size=c.size, scale_min=c.crop_scale, rotate=c.rotate, perspective=c.perspective,
                                color_jitter=c.color_jitter)
        self.views_pool = ThreadPoolExecutor(max(1, c.workers), thread_name_prefix="views")

    def train_step(self) -> dict[str, torch.Tensor]:
        c, env = self.config, self.env
        batch = self.loader.next()
        views = make_views(batch.images, self.views, c.seed, self.step, env.rank * c.batch, self.views_pool)
        x = to_float(views, env.device)
        with torch.no_grad():
            gram = gram_vectors(self.encoder.embedder, x, c.pool)
        code, p = self.model(gram)
        b = batch.images.shape[0]
        loss, acc = losses.nt_xent(p[:b], p[b:], c.temperature, env)
        metrics = {"acc": acc.detach()}
        if c.code_contrast > 0:
            # the codes, not only their projections, tell artworks apart: they are what G sees
            code_loss, _ = losses.nt_xent(code[:b], code[b:], c.temperature, env)
            loss = loss + c.code_contrast * code_loss
            metrics["code_loss"] = code_loss.detach()
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return {"loss": loss.detach(), **metrics}

    def progress(self, record: dict, rate: float) -> str:
        return f"loss {record['loss']:.4f} acc {record['acc']:.3f} {format_rate(rate)}"

    def after_step(self, metrics: dict[str, torch.Tensor]) -> None:
        loss = metrics["loss"]
        if not torch.isfinite(loss):
            raise TrainError(f"loss became {loss.item()} at step {self.step}; lower --lr")

    def checkpoint(self) -> Path | None:
        path = None
        if self.env.main:
            path = self.writer.save({
                "format": FORMAT, "style_encoder": self.encoder.state_dict(),
                "projector": self.projector.state_dict(), "optimizer": self.optim.state_dict(),
                "step": self.step, "args": self.config.to_dict(), "loader": self.loader.state_dict(),
                "world": self.env.world}, self.step)
        self.env.barrier()
        return path

    def close(self) -> None:
        self.loader.close()
        self.views_pool.shutdown(wait=False)
