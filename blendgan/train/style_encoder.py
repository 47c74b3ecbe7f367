"""``train-style-encoder``: self-supervised contrastive training of the Gram-matrix style encoder.

Each artwork gives two colour-preserving views (random resized crop, flip, small rotation and
perspective; no colour jitter: colour is style).  A frozen VGG19 turns each view into its
Gram vector g [610304]; the trainable 4-layer MLP of the style encoder (``embedder_mlp``)
maps it to the style code z_embed [style_dim]; a 4-layer projector head maps that to
p [style_dim], and the NT-Xent loss (SimCLR) pulls the two views of an artwork together
and pushes the other artworks of the batch (of every process) apart.

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

import argparse
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import EqualLinear
from ..models.style_encoder import STYLE_POOL, StyleEmbedder, StyleEncoder, gram_matrix
from ..errors import TrainError
from ..runtime import DistEnv, derive_seed, process_group, seeded_init
from . import common as C
from .data import BatchLoader, ViewConfig, open_source, random_view, to_float

log = logging.getLogger("blendgan")

FORMAT = "blendgan-style-encoder/1"
ADAM_BETAS = (0.9, 0.99)


class Projector(nn.Sequential):
    """Projection head: 3 equalized linears with fused leaky ReLU + 1 linear, [N, D] -> [N, D]."""

    def __init__(self, style_dim: int, n_layers: int = 4):
        layers = [EqualLinear(style_dim, style_dim, activation="fused_lrelu" if i < n_layers - 1 else None)
                  for i in range(n_layers)]
        super().__init__(*layers)


class ContrastiveHead(nn.Module):
    """The trainable part: Gram vector [N, 610304] -> z_embed (MLP) -> projection [N, D]."""

    def __init__(self, embedder_mlp: nn.Module, projector: Projector):
        super().__init__()
        self.embedder_mlp = embedder_mlp
        self.projector = projector

    def forward(self, gram: torch.Tensor) -> torch.Tensor:
        return self.projector(self.embedder_mlp(gram))


def gram_vectors(embedder: StyleEmbedder, x: torch.Tensor, pool: int = STYLE_POOL) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1] -> Gram vectors [N, 610304] (VGG19 on a ``pool``² average pool).

    ``pool`` = 256 is what the style encoder does at inference; smaller values only to test.
    """
    x = F.adaptive_avg_pool2d(x, (pool, pool))
    return torch.cat([gram_matrix(f).flatten(1) for f in embedder.feature_extractor(x)], dim=1)


def nt_xent(p1: torch.Tensor, p2: torch.Tensor, temperature: float, env: DistEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent (normalised temperature-scaled cross entropy) of two views [B, D] each.

    Keys are the views of every process (gathered with gradients).  For view 1 of sample i the
    positive is view 2 of sample i; every other key but itself is a negative.
    Returns (loss, top-1 accuracy of finding the positive).
    """
    b = p1.shape[0]
    z1, z2 = F.normalize(p1.float(), dim=1), F.normalize(p2.float(), dim=1)
    k1, k2 = C.gather_with_grad(z1, env), C.gather_with_grad(z2, env)
    n_all = k1.shape[0]
    offset = env.rank * b
    queries = torch.cat([z1, z2])                     # [2B, D]
    keys = torch.cat([k1, k2])                        # [2·W·B, D]
    logits = queries @ keys.t() / temperature         # [2B, 2·W·B]
    local = torch.arange(b, device=p1.device) + offset
    self_idx = torch.cat([local, local + n_all])
    pos_idx = torch.cat([local + n_all, local])
    logits = logits.masked_fill(F.one_hot(self_idx, keys.shape[0]).bool(), float("-inf"))
    loss = F.cross_entropy(logits, pos_idx)
    acc = (logits.argmax(1) == pos_idx).float().mean()
    return loss, acc


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


def run(args: argparse.Namespace) -> int:
    """The ``train-style-encoder`` command; returns the exit status (130 when stopped by a signal)."""
    resume_path = C.resolve_resume(args.resume) if args.resume else None
    C.settle_outdir(args, resume_path)
    saved = C.load_training_checkpoint(resume_path, FORMAT) if resume_path else None
    if saved is not None:
        C.merge_resumed_args(args, saved["args"], {"style_dim"})
    if args.data is None:
        raise TrainError("give the artwork folder with --data (or --resume a run)")
    with process_group(args.device) as env:
        return _train(args, env, saved, resume_path)


def _train(args, env: DistEnv, saved: dict | None, resume_path) -> int:
    outdir = Path(args.outdir)
    if env.main:
        outdir.mkdir(parents=True, exist_ok=True)
    if args.batch < 2 and env.world < 2:
        raise TrainError("--batch must be at least 2 (the other artworks are the negatives)")
    with seeded_init(derive_seed(args.seed, "style-encoder-init")):
        encoder = StyleEncoder(style_dim=args.style_dim)
        C.init_vgg_random(encoder)  # replaced below when --vgg / --init / --resume give weights
        projector = Projector(args.style_dim)
    if saved is not None:
        encoder.load_state_dict(saved["style_encoder"])
        projector.load_state_dict(saved["projector"])
    else:
        _initial_weights(encoder, args)
    encoder.embedder.requires_grad_(False).eval()
    encoder.to(env.device)
    projector.to(env.device)
    head = ContrastiveHead(encoder.embedder_mlp, projector)
    model: nn.Module = head
    if env.distributed:
        model = nn.parallel.DistributedDataParallel(
            head, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    optim = torch.optim.Adam(head.parameters(), lr=args.lr, betas=ADAM_BETAS)

    source = open_source(args.data, args.load_size or args.size, "styles", args.cache, args.workers, env)
    loader = BatchLoader(source, args.batch, env, args.seed)
    step = 0
    if saved is not None:
        optim.load_state_dict(saved["optimizer"])
        for group in optim.param_groups:  # the saved group carries the old run's rate; the flags win
            group["lr"], group["betas"] = args.lr, ADAM_BETAS
        loader.load_state_dict(saved["loader"])
        step = int(saved["step"])
        log.info("resumed %s at step %d", resume_path, step)
    global_batch = args.batch * env.world
    total = args.steps if args.kimg is None else math.ceil(args.kimg * 1000 / global_batch)
    cfg = ViewConfig(size=args.size, scale_min=args.crop_scale, rotate=args.rotate, perspective=args.perspective)
    writer = C.CheckpointWriter(outdir, args.keep)
    logger = C.MetricLogger(outdir, env.main, step, args.tensorboard)
    views_pool = ThreadPoolExecutor(max(1, args.workers), thread_name_prefix="views")

    def checkpoint() -> None:
        if env.main:
            writer.save({"format": FORMAT, "style_encoder": encoder.state_dict(), "projector": projector.state_dict(),
                         "optimizer": optim.state_dict(), "step": step, "args": C.plain_args(args),
                         "loader": loader.state_dict(), "world": env.world}, step)
        env.barrier()

    bar = None
    if env.main and not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True)
    meter = C.RateMeter()
    status, last_saved = 0, step
    sums = torch.zeros(2, device=env.device)
    n_sum = 0
    stop = C.StopRequest()
    try:
        with stop:
            while step < total:
                batch = loader.next()
                views = make_views(batch.images, cfg, args.seed, step, env.rank * args.batch, views_pool)
                x = to_float(views, env.device)
                with torch.no_grad():
                    gram = gram_vectors(encoder.embedder, x, args.pool)
                p = model(gram)
                b = batch.images.shape[0]
                loss, acc = nt_xent(p[:b], p[b:], args.temperature, env)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                step += 1
                meter.add(global_batch)
                sums += torch.stack([loss.detach(), acc.detach()])
                n_sum += 1
                if step % args.log_every == 0 or step == total:
                    vals = C.all_reduce_mean(sums / n_sum, env).tolist()
                    rate = meter.rate()
                    rec = {"step": step, "kimg": step * global_batch / 1000, "loss": vals[0], "acc": vals[1],
                           "kimg_per_s": rate}
                    logger.write(rec)
                    if bar is not None:
                        bar.set_postfix_str(f"loss {vals[0]:.4f} acc {vals[1]:.3f} {C.format_rate(rate)}")
                    sums.zero_()
                    n_sum = 0
                if bar is not None:
                    bar.update(1)
                if not torch.isfinite(loss):
                    raise TrainError(f"loss became {loss.item()} at step {step}; lower --lr")
                stopping = C.any_process(stop.requested, env)
                if step % args.save_every == 0 or step == total or stopping:
                    checkpoint()
                    last_saved = step
                if stopping:
                    status = 130
                    break
    except KeyboardInterrupt:  # see gan.Trainer.train: saved unless it was a second Ctrl-C
        if not env.distributed and step != last_saved and not stop.requested:
            checkpoint()
        status = 130
    finally:
        if bar is not None:
            bar.close()
        logger.close()
        loader.close()
        views_pool.shutdown(wait=False)
    if env.main:
        log.info("%s at step %d: %s", "stopped" if status else "done", step, writer.latest)
    return status


def _initial_weights(encoder: StyleEncoder, args) -> None:
    """VGG19 from ``--vgg`` (and the MLP too from ``--init``); else warn: random VGG."""
    if args.init:
        sd = C.load_style_encoder_state(args.init)
        has_vgg, _ = C.assign_style_encoder(encoder, sd, args.init, need_mlp=True)
        if not has_vgg and not args.vgg:
            log.warning("%s has no VGG19 weights and no --vgg was given: the VGG is random", args.init)
    if args.vgg:
        sd = C.load_style_encoder_state(args.vgg)
        has_vgg = all(k in sd for k in encoder.state_dict() if k.startswith(C.VGG_PREFIX))
        if not has_vgg:
            raise TrainError(f"--vgg {args.vgg}: no complete VGG19 'features' weights in it")
        C.assign_style_encoder(encoder, {k: v for k, v in sd.items() if k.startswith(C.VGG_PREFIX)},
                               args.vgg, need_mlp=False)
    elif not args.init:
        log.warning("no --vgg given: the VGG19 of the style encoder is randomly initialised; its Gram "
                    "matrices are poor style features. Pass --vgg with torchvision's vgg19 weights "
                    "(vgg19-dcbb9e9d.pth) or a blendgan.pt / style-encoder file that carries them.")
