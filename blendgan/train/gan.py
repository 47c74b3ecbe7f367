"""``train``: StyleGAN2 training extended to BlendGAN (face branch + style branch + WBM).

Per step, with B faces x_f and B artworks x_a (each process) and the artworks' style codes
e = E(x_a) from the frozen style encoder E (computed once for the whole artwork folder):

* face branch: z, z' ~ N(0, I) -> w = style(z) (style mixing with ``--mixing``: the W+ rows
  from a random crossover on come from w' = style(z')) -> natural image G(W+);
* style branch: w_s = embedding(e) -> stylized image G(a·W+ + (1 − a)·w_s), with the
  learned blend weights a = clamp(add_weight, 0, 1) [1, n_latent, 1] (the WBM; trained with a
  straight-through clamp and projected back into [0, 1], see :func:`blend_weights_st`);
* D_face judges natural images against faces, D_style stylized images against artworks,
  and the projection discriminator D_proj judges (image, style code) pairs: real pairs
  (x_a, e), fake pairs (G_stylized, e) and mismatched pairs (x_a, e of another artwork);
* non-saturating logistic losses; lazy R1 on all three discriminators every
  ``--d-reg-every`` steps; path-length regularisation of G every ``--g-reg-every`` steps
  (on natural and stylized images); an EMA copy ``g_ema`` of G.

Checkpoints (``OUTDIR/checkpoints/{step:06d}.pt`` and ``latest.pt``, ``torch.load``-able with
``weights_only=True``) use the official layout: ``'g_ema'`` is a complete BlendGAN generator
state dict (style encoder included as ``embedder.*``), so ``BlendGAN.from_pretrained`` and
every ``blendgan`` command read them directly.  Besides: ``'g'`` (no ``embedder.*``),
``'d_face'``, ``'d_style'``, ``'d_proj'``, ``'g_optim'``, ``'d_optim'``, ``'g_scaler'``,
``'d_scaler'``, ``'pl_mean'``, ``'step'``, ``'args'`` (plain dict), ``'rng'`` (per process:
generator states as uint8 tensors), ``'loaders'`` (data positions), ``'world'``, ``'format'``.
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import io
from ..checkpoint import CheckpointError, infer_generator_config, load_file, weights_fingerprint
from ..models import Generator, StyleEncoder
from ..models.discriminator import Discriminator, ProjectionDiscriminator
from ..errors import TrainError
from ..runtime import DistEnv, derive_seed, make_generator, process_group, seeded_init
from . import common as C
from .data import BatchLoader, ImageSource, open_source, random_flip, to_float
from .style_encoder import gram_vectors

log = logging.getLogger("blendgan")

FORMAT = "blendgan-train/2"  # 2: d_proj is the official ProjectionDiscriminator
ARCH_KEYS = frozenset({"size", "style_dim", "n_mlp", "channel_multiplier", "channels"})
EMBED_BATCH = 16


# -- model pieces ---------------------------------------------------------------------------------
class GeneratorStep(nn.Module):
    """The generator as one module (what DistributedDataParallel wraps).

    ``forward(z1, z2, cross, z_embed, noise)``: face codes z1, z2 [B, D]; ``cross`` [B] int,
    W+ rows ``< cross`` come from z1, the others from z2 (``cross = n_latent``: no mixing);
    ``z_embed`` [B, D] style codes or None; ``noise``: one map per layer, [2B (B without
    z_embed), 1, r, r].  Returns (images [2B, 3, S, S] = natural then stylized, W+ [2B, n_latent, D]).
    """

    def __init__(self, g: Generator):
        super().__init__()
        self.g = g

    def forward(self, z1, z2, cross, z_embed, noise):
        g = self.g
        w1, w2 = g.mapping(z1), g.mapping(z2)
        rows = torch.arange(g.n_latent, device=z1.device).view(1, -1, 1)
        w_face = torch.where(rows < cross.view(-1, 1, 1), w1.unsqueeze(1), w2.unsqueeze(1))
        if z_embed is None:
            w_plus = w_face
        else:
            a = blend_weights_st(g).to(w_face.dtype)
            w_style = g.style_mapping(z_embed).unsqueeze(1)
            w_plus = torch.cat([w_face, w_face * a + w_style * (1 - a)])
        return g(w_plus, noise), w_plus


def blend_weights_st(g: Generator) -> torch.Tensor:
    """The WBM weights clamp(add_weight, 0, 1) [1, n_latent, 1] with a straight-through gradient.

    ``Generator.blend`` clamps, and a clamp passes no gradient at its bounds: ``add_weight``
    starts at exactly 1 and would never move.  Training uses the clamped value forward and the
    identity backward, and :func:`project_add_weight` keeps the parameter in [0, 1] after each
    update (projected gradient descent), so inference's clamp is then a no-op.
    """
    w = g.add_weight
    return w + (w.clamp(0.0, 1.0) - w).detach()


@torch.no_grad()
def project_add_weight(g: Generator) -> None:
    g.add_weight.clamp_(0.0, 1.0)


def d_logistic(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator non-saturating logistic loss: softplus(−D(real)) + softplus(D(fake))."""
    return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()


def g_nonsaturating(fake: torch.Tensor) -> torch.Tensor:
    """Generator non-saturating loss: softplus(−D(fake))."""
    return F.softplus(-fake.float()).mean()


def r1_penalty(pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """R1: E‖∇ₓ D(x)‖² over real images ``inputs`` [N, 3, S, S] (differentiable)."""
    grad, = torch.autograd.grad(pred.sum(), inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def style_embeddings(encoder: StyleEncoder, source: ImageSource, env: DistEnv, cache_dir, pool: int) -> torch.Tensor:
    """z_embed [N_art, D] of every artwork (at the training size), on ``env.device``.

    Each process embeds its share; the results are gathered.  With ``cache_dir`` the table is
    kept as ``.npy`` keyed by the folder and the encoder weights.
    """
    n = len(source)
    path = None
    if cache_dir is not None:
        key = f"{source.fingerprint}-{weights_fingerprint(encoder, length=12)}-p{pool}"
        path = Path(cache_dir) / f"{source.name}-embed-{source.size}px-{n}-{key}.npy"
        if path.exists():
            arr = np.load(path)
            if arr.shape == (n, encoder.style_dim):
                return torch.from_numpy(arr).to(env.device)
    per = math.ceil(n / env.world)
    mine = list(range(env.rank * per, min(n, (env.rank + 1) * per)))
    out = torch.zeros(per, encoder.style_dim, device=env.device)
    with torch.no_grad():
        for i in range(0, len(mine), EMBED_BATCH):
            idx = mine[i:i + EMBED_BATCH]
            x = to_float(source.get(idx), env.device)
            out[i:i + len(idx)] = encoder.embedder_mlp(gram_vectors(encoder.embedder, x, pool))
    if env.distributed:
        parts = [torch.empty_like(out) for _ in range(env.world)]
        torch.distributed.all_gather(parts, out)
        out = torch.cat(parts)
    table = out[:n].contiguous()
    if path is not None and env.main:
        with io.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, table.cpu().numpy())
    env.barrier()
    return table


# -- configuration --------------------------------------------------------------------------------
def resolve_arch(args: argparse.Namespace, saved_args: dict | None, init_sd: dict | None) -> None:
    """Settle the flags: on resume every flag not given takes the checkpoint's value (the
    architecture must match); with ``--init`` the architecture flags not given are read from
    its generator."""
    if saved_args is not None:
        C.merge_resumed_args(args, saved_args, ARCH_KEYS)
        return
    if init_sd is None:
        return
    try:
        cfg = infer_generator_config(init_sd, args.init)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    explicit = getattr(args, "_explicit", None)
    inferred = {"size": cfg.size, "style_dim": cfg.style_dim, "n_mlp": cfg.n_mlp,
                "channels": ",".join(str(w) for _, w in cfg.channels)}
    for k, v in inferred.items():
        if explicit is None or k not in explicit:
            setattr(args, k, v)
        elif k != "channels" and getattr(args, k) != v:
            raise TrainError(f"--{k.replace('_', '-')} {getattr(args, k)} differs from --init's {v}")


def _load_init(path) -> dict:
    try:
        obj = load_file(path)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    if not isinstance(obj, dict) or not any(isinstance(obj.get(k), dict) for k in ("g_ema", "g")):
        raise TrainError(f"{path}: --init needs a checkpoint with 'g_ema' (or 'g') weights")
    return obj


def _load_matching(module: nn.Module, sd: dict | None, what: str) -> int:
    """Copy the entries of ``sd`` whose name and shape match ``module``; returns how many."""
    if not isinstance(sd, dict):
        return 0
    own = module.state_dict()
    use = {k: v.float() for k, v in sd.items()
           if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) == tuple(own[k].shape)}
    module.load_state_dict(use, strict=False)
    log.info("--init: %d/%d tensors of %s", len(use), len(own), what)
    return len(use)


# -- training -------------------------------------------------------------------------------------
def run(args: argparse.Namespace, callback=None) -> int:
    """The ``train`` command; returns the exit status (130 when stopped by a signal).

    ``callback(trainer)``, if given, runs after every step (tests use it to interrupt).
    """
    resume_path = C.resolve_resume(args.resume) if args.resume else None
    C.settle_outdir(args, resume_path)
    saved = C.load_training_checkpoint(resume_path, FORMAT) if resume_path else None
    init = _load_init(args.init) if args.init and saved is None else None
    init_g = None if init is None else (init.get("g_ema") or init.get("g"))
    resolve_arch(args, saved["args"] if saved else None, init_g)
    C.check_size(args.size)
    if args.faces is None or args.styles is None:
        raise TrainError("give the face folder (--faces) and the artwork folder (--styles)")
    with process_group(args.device) as env:
        return Trainer(args, env, saved, resume_path, init, callback).train()


class Trainer:
    """One training run (one process of it)."""

    def __init__(self, args, env: DistEnv, saved: dict | None, resume_path, init: dict | None,
                 callback=None):
        self.args, self.env, self.saved = args, env, saved
        self.callback = callback
        a = args
        self.outdir = Path(a.outdir)
        if env.main:
            self.outdir.mkdir(parents=True, exist_ok=True)
        dev = env.device
        self.amp = bool(a.fp16 and dev.type == "cuda")
        if a.fp16 and not self.amp:
            log.warning("--fp16 is ignored on %s (CUDA only)", dev)
        channels = C.parse_channels(a.channels, a.size)
        arch = dict(channel_multiplier=a.channel_multiplier, channels=channels)
        with seeded_init(derive_seed(a.seed, "init")):
            self.g = Generator(a.size, a.style_dim, a.n_mlp, style_encoder=False, **arch)
            self.d_face = Discriminator(a.size, **arch)
            self.d_style = Discriminator(a.size, **arch)
            self.d_proj = ProjectionDiscriminator(a.size, a.style_dim, **arch)
        with seeded_init(derive_seed(a.seed, "style-encoder-init")):
            self.encoder = StyleEncoder(style_dim=a.style_dim)
            C.init_vgg_random(self.encoder)  # replaced below when weights are given
        self.g_ema = copy.deepcopy(self.g)
        if saved is not None:
            self._load_models(saved)
        else:
            self._initial_weights(init)
        for m in (self.g, self.g_ema, self.d_face, self.d_style, self.d_proj, self.encoder):
            m.to(dev)
        self.g_ema.eval().requires_grad_(False)
        self.encoder.eval().requires_grad_(False)

        self.g_optim = torch.optim.Adam(self.g.parameters())
        d_params = [p for d in (self.d_face, self.d_style, self.d_proj) for p in d.parameters()]
        self.d_optim = torch.optim.Adam(d_params)
        self._set_hyperparameters()
        self.g_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        self.gstep = GeneratorStep(self.g)
        self.gstep_ddp, self.d_face_ddp, self.d_style_ddp, self.d_proj_ddp = (
            self._wrap(m) for m in (self.gstep, self.d_face, self.d_style, self.d_proj))

        # data
        self.faces = open_source(a.faces, a.size, "faces", a.cache, a.workers, env)
        self.styles = open_source(a.styles, a.size, "styles", a.cache, a.workers, env)
        if len(self.styles) < 2 and a.mismatch_weight > 0:
            # the only "other" artwork would be the same one: D_proj would be asked to call
            # one pair both real and fake
            log.warning("one artwork only: mismatched-pair negatives are off (--mismatch-weight 0)")
            a.mismatch_weight = 0.0
        self.face_loader = BatchLoader(self.faces, a.batch, env, derive_seed(a.seed, "faces"))
        self.style_loader = BatchLoader(self.styles, a.batch, env, derive_seed(a.seed, "styles"))
        self.embeds = style_embeddings(self.encoder, self.styles, env, a.cache, a.style_pool)

        # randomness: per process, saved in checkpoints
        self.gens = {"latent": make_generator(derive_seed(a.seed, "latent", env.rank), dev),
                     "aug": make_generator(derive_seed(a.seed, "aug", env.rank), dev)}
        self.pl_mean = torch.zeros((), device=dev)
        self.step = 0
        if saved is not None:
            self._load_state(saved)
            log.info("resumed %s at step %d", resume_path, self.step)
        self.global_batch = a.batch * env.world
        self.total = math.ceil(a.kimg * 1000 / self.global_batch)
        self.ema_decay = 0.5 ** (self.global_batch / max(a.ema_kimg * 1000, 1e-8))
        self.writer = C.CheckpointWriter(self.outdir, a.keep)
        self.saved = None  # release the (memory-mapped) checkpoint

    # -- setup helpers -----------------------------------------------------------------------------
    def _wrap(self, module: nn.Module) -> nn.Module:
        if not self.env.distributed:
            return module
        dev = self.env.device
        return nn.parallel.DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None,
                                                   broadcast_buffers=False)

    def _initial_weights(self, init: dict | None) -> None:
        a = self.args
        if init is not None:
            g_sd = init.get("g") if isinstance(init.get("g"), dict) else init.get("g_ema")
            _load_matching(self.g, g_sd, "g")
            _load_matching(self.g_ema, init.get("g_ema") or g_sd, "g_ema")
            d_any = init.get("d")
            _load_matching(self.d_face, init.get("d_face", d_any), "d_face")
            _load_matching(self.d_style, init.get("d_style", d_any), "d_style")
            _load_matching(self.d_proj, init.get("d_proj", d_any), "d_proj")
        if a.style_encoder:
            sd = C.load_style_encoder_state(a.style_encoder)
            has_vgg, _ = C.assign_style_encoder(self.encoder, sd, a.style_encoder, need_mlp=True)
            if not has_vgg:
                log.warning("%s has no VGG19 weights: the style encoder's VGG is random", a.style_encoder)
        elif init is not None and any(k.startswith("embedder.") for k in init.get("g_ema", {})):
            sd = C.load_style_encoder_state(a.init)
            C.assign_style_encoder(self.encoder, sd, a.init, need_mlp=True)
            log.info("--init: style encoder from %s", a.init)
        else:
            log.warning("no --style-encoder given: using a randomly initialised (frozen) style encoder; "
                        "train one with `blendgan train-style-encoder` for meaningful style codes")

    def _load_models(self, saved: dict) -> None:
        g_ema = dict(saved["g_ema"])
        enc = {k[len("embedder."):]: g_ema.pop(k) for k in list(g_ema) if k.startswith("embedder.")}
        self.g.load_state_dict(saved["g"])
        self.g_ema.load_state_dict(g_ema)
        self.encoder.load_state_dict(enc)
        self.d_face.load_state_dict(saved["d_face"])
        self.d_style.load_state_dict(saved["d_style"])
        self.d_proj.load_state_dict(saved["d_proj"])

    def _set_hyperparameters(self) -> None:
        """Adam's learning rate and betas from the flags, corrected for lazy regularization
        (StyleGAN2: ratio k/(k+1) for a regularizer applied every k steps)."""
        a = self.args
        g_ratio = a.g_reg_every / (a.g_reg_every + 1) if a.path_regularize > 0 else 1.0
        d_ratio = a.d_reg_every / (a.d_reg_every + 1) if a.r1 > 0 else 1.0
        for optim, ratio in ((self.g_optim, g_ratio), (self.d_optim, d_ratio)):
            for group in optim.param_groups:
                group["lr"], group["betas"] = a.lr * ratio, (0.0, 0.99 ** ratio)

    def _load_state(self, saved: dict) -> None:
        env = self.env
        self.g_optim.load_state_dict(saved["g_optim"])
        self.d_optim.load_state_dict(saved["d_optim"])
        self._set_hyperparameters()  # the saved groups carry the old run's; the flags win
        self.g_scaler.load_state_dict(saved["g_scaler"])
        self.d_scaler.load_state_dict(saved["d_scaler"])
        self.pl_mean.fill_(float(saved["pl_mean"]))
        self.step = int(saved["step"])
        self.face_loader.load_state_dict(saved["loaders"]["faces"])
        self.style_loader.load_state_dict(saved["loaders"]["styles"])
        if int(saved.get("world", 1)) == env.world and len(saved["rng"]) == env.world:
            try:
                C.set_rng_states(self.gens, saved["rng"][env.rank])
            except (RuntimeError, KeyError) as exc:  # e.g. CPU states restored on a CUDA device
                log.warning("random streams not restored (%s): reseeded from --seed and the step", exc)
                self._reseed()
        else:
            log.warning("resuming with %d processes instead of %s: random streams reseeded from --seed and "
                        "the step (data order and weights continue exactly)", env.world, saved.get("world"))
            self._reseed()

    def _reseed(self) -> None:
        for name, g in self.gens.items():
            g.manual_seed(derive_seed(self.args.seed, name, self.env.rank, "step", self.step))

    # -- random draws ------------------------------------------------------------------------------
    def _latents(self, b: int, stylized: bool):
        """z1, z2 [b, D], cross [b], noise maps for 2b (b) images, from the latent stream."""
        gen, dev, a = self.gens["latent"], self.env.device, self.args
        n_latent = self.g.n_latent
        z1 = torch.randn(b, a.style_dim, generator=gen, device=dev)
        z2 = torch.randn(b, a.style_dim, generator=gen, device=dev)
        mix = torch.rand(b, generator=gen, device=dev) < a.mixing
        cross = torch.randint(1, n_latent, (b,), generator=gen, device=dev)
        cross = torch.where(mix, cross, torch.full_like(cross, n_latent))
        noise = self.g.random_noise(2 * b if stylized else b, gen)
        return z1, z2, cross, noise

    def _mismatched(self, idx: np.ndarray) -> torch.Tensor:
        """Style codes of other artworks than ``idx`` (one each): [B, D]."""
        n = len(self.styles)
        if n < 2:
            return self.embeds[torch.as_tensor(idx, device=self.env.device)]
        gen = self.gens["aug"]
        shift = torch.randint(1, n, (len(idx),), generator=gen, device=gen.device).cpu()
        other = (torch.as_tensor(idx) + shift) % n
        return self.embeds[other.to(self.env.device)]

    # -- one step ----------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.amp)

    def train_step(self, metrics: dict) -> None:
        a, env, dev = self.args, self.env, self.env.device
        face_b, style_b = self.face_loader.next(), self.style_loader.next()
        real_face = random_flip(to_float(face_b.images, dev), self.gens["aug"]) if a.flip else to_float(face_b.images, dev)
        real_art = random_flip(to_float(style_b.images, dev), self.gens["aug"]) if a.flip else to_float(style_b.images, dev)
        e = self.embeds[torch.as_tensor(style_b.indices, device=dev)]
        e_mis = self._mismatched(style_b.indices) if a.mismatch_weight > 0 else None
        b = real_face.shape[0]
        ds = (self.d_face, self.d_style, self.d_proj)

        # -- discriminators
        C.requires_grad(self.g, False)
        for d in ds:
            C.requires_grad(d, True)
        with torch.no_grad():
            z1, z2, cross, noise = self._latents(b, True)
            fake, _ = self.gstep(z1, z2, cross, e, noise)
        with self._autocast():
            f_real, f_fake = self.d_face_ddp(real_face), self.d_face_ddp(fake[:b])
            s_real, s_fake = self.d_style_ddp(real_art), self.d_style_ddp(fake[b:])
            p_real, p_fake = self.d_proj_ddp(real_art, e), self.d_proj_ddp(fake[b:], e)
            p_mis = self.d_proj_ddp(real_art, e_mis) if e_mis is not None else None
        d_face_loss = d_logistic(f_real, f_fake)
        d_style_loss = d_logistic(s_real, s_fake)
        d_proj_loss = d_logistic(p_real, p_fake)
        if p_mis is not None:
            d_proj_loss = d_proj_loss + a.mismatch_weight * F.softplus(p_mis.float()).mean()
        d_loss = a.face_weight * d_face_loss + a.style_weight * d_style_loss + a.proj_weight * d_proj_loss
        self.d_optim.zero_grad(set_to_none=True)
        self.d_scaler.scale(d_loss).backward()
        self.d_scaler.step(self.d_optim)
        self.d_scaler.update()
        metrics.update(d_face=d_face_loss, d_style=d_style_loss, d_proj=d_proj_loss,
                       face_real=f_real.float().mean(), face_fake=f_fake.float().mean(),
                       style_real=s_real.float().mean(), style_fake=s_fake.float().mean(),
                       proj_real=p_real.float().mean(), proj_fake=p_fake.float().mean())

        if a.r1 > 0 and self.step % a.d_reg_every == 0:
            rf = real_face.detach().requires_grad_(True)
            ra = real_art.detach().requires_grad_(True)
            f_pred, s_pred, p_pred = self.d_face_ddp(rf), self.d_style_ddp(ra), self.d_proj_ddp(ra, e)
            r1_face, r1_style, r1_proj = r1_penalty(f_pred, rf), r1_penalty(s_pred, ra), r1_penalty(p_pred, ra)
            r1_loss = a.r1 / 2 * a.d_reg_every * (r1_face + r1_style + r1_proj)
            # the 0·D terms tie every parameter (the last biases too) into the graph, for DDP
            r1_loss = r1_loss + 0 * (f_pred[0, 0] + s_pred[0, 0] + p_pred[0, 0])
            self.d_optim.zero_grad(set_to_none=True)
            r1_loss.backward()
            self.d_optim.step()
            metrics.update(r1_face=r1_face, r1_style=r1_style, r1_proj=r1_proj)

        # -- generator
        C.requires_grad(self.g, True)
        for d in ds:
            C.requires_grad(d, False)
        z1, z2, cross, noise = self._latents(b, True)
        fake, _ = self.gstep_ddp(z1, z2, cross, e, noise)  # G stays float32 (no clamping for fp16)
        with self._autocast():
            # the discriminators' own modules: no DDP bookkeeping for parameters without gradients
            g_face = g_nonsaturating(self.d_face(fake[:b]))
            g_style = g_nonsaturating(self.d_style(fake[b:]))
            g_proj = g_nonsaturating(self.d_proj(fake[b:], e))
        g_loss = a.face_weight * g_face + a.style_weight * g_style + a.proj_weight * g_proj
        self.g_optim.zero_grad(set_to_none=True)
        self.g_scaler.scale(g_loss).backward()
        self.g_scaler.step(self.g_optim)
        self.g_scaler.update()
        project_add_weight(self.g)
        metrics.update(g_face=g_face, g_style=g_style, g_proj=g_proj)

        if a.path_regularize > 0 and self.step % a.g_reg_every == 0:
            pb = max(1, b // a.path_batch_shrink)
            z1, z2, cross, noise = self._latents(pb, True)
            img, w_plus = self.gstep_ddp(z1, z2, cross, e[:pb], noise)
            pl_noise = torch.randn(img.shape, generator=self.gens["latent"], device=dev) / math.sqrt(
                img.shape[2] * img.shape[3])
            grad, = torch.autograd.grad((img * pl_noise).sum(), w_plus, create_graph=True)
            lengths = grad.pow(2).sum(2).mean(1).sqrt()
            batch_mean = C.all_reduce_mean(lengths.detach().mean(), env)
            pl_mean = self.pl_mean + a.pl_decay * (batch_mean - self.pl_mean)
            pl_penalty = (lengths - pl_mean).pow(2).mean()
            pl_loss = a.path_regularize * a.g_reg_every * pl_penalty + 0 * img[0, 0, 0, 0]
            self.g_optim.zero_grad(set_to_none=True)
            pl_loss.backward()
            self.g_optim.step()
            project_add_weight(self.g)
            self.pl_mean = pl_mean.detach()
            metrics.update(pl=pl_penalty, pl_mean=self.pl_mean)

        C.ema_update(self.g_ema, self.g, self.ema_decay)

    # -- outputs -----------------------------------------------------------------------------------
    def checkpoint(self) -> Path | None:
        """Write ``checkpoints/{step}.pt`` and ``latest.pt`` (all processes must call it)."""
        rng = C.gather_objects({k: v.cpu() for k, v in C.rng_states(self.gens).items()}, self.env)
        path = None
        if self.env.main:
            g_ema = dict(self.g_ema.state_dict())
            g_ema.update({f"embedder.{k}": v for k, v in self.encoder.state_dict().items()})
            path = self.writer.save({
                "format": FORMAT, "g_ema": g_ema, "g": self.g.state_dict(),
                "d_face": self.d_face.state_dict(), "d_style": self.d_style.state_dict(),
                "d_proj": self.d_proj.state_dict(), "g_optim": self.g_optim.state_dict(),
                "d_optim": self.d_optim.state_dict(), "g_scaler": self.g_scaler.state_dict(),
                "d_scaler": self.d_scaler.state_dict(), "pl_mean": float(self.pl_mean),
                "step": self.step, "kimg": self.step * self.global_batch / 1000, "args": C.plain_args(self.args),
                "rng": rng, "world": self.env.world,
                "loaders": {"faces": self.face_loader.state_dict(), "styles": self.style_loader.state_dict()},
            }, self.step)
        self.env.barrier()
        return path

    @torch.no_grad()
    def sample_grid(self) -> Path:
        """``samples/{step:06d}.png``: row 1 natural faces of fixed codes; then one row per fixed
        artwork (shown in the first column), the same faces stylized with its style code."""
        a, dev = self.args, self.env.device
        gen = make_generator(derive_seed(a.seed, "samples"), dev)
        z = torch.randn(a.n_sample, a.style_dim, generator=gen, device=dev)
        n_art = min(a.n_sample_styles, len(self.styles))
        art_idx = torch.randperm(len(self.styles), generator=make_generator(derive_seed(a.seed, "sample-art")))[:n_art]
        g = self.g_ema
        w_plus = g.mapping(z).unsqueeze(1).expand(-1, g.n_latent, -1)
        rows = [np.concatenate([np.full((1, a.size, a.size, 3), 255, np.uint8), io.to_uint8(g(w_plus))])]
        arts = self.styles.get(art_idx.tolist())
        for j, i in enumerate(art_idx.tolist()):
            w_s = g.style_mapping(self.embeds[i:i + 1].expand(a.n_sample, -1))
            rows.append(np.concatenate([arts[j:j + 1], io.to_uint8(g(g.blend(w_plus, w_s)))]))
        return io.write_image(self.outdir / "samples" / f"{self.step:06d}.png", C.image_grid(rows))

    # -- loop --------------------------------------------------------------------------------------
    def train(self) -> int:
        a, env = self.args, self.env
        logger = C.MetricLogger(self.outdir, env.main, self.step, a.tensorboard)
        bar = None
        if env.main and not a.quiet:
            from tqdm import tqdm
            bar = tqdm(total=self.total, initial=self.step, unit="step", dynamic_ncols=True)
        meter = C.RateMeter()
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        status, last_saved = 0, self.step
        if env.main and self.step == 0 and a.sample_every > 0:
            self.sample_grid()
        stop = C.StopRequest()
        try:
            with stop:
                while self.step < self.total:
                    metrics: dict[str, torch.Tensor] = {}
                    self.train_step(metrics)
                    self.step += 1
                    meter.add(self.global_batch)
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0) + v.detach().float()
                        counts[k] = counts.get(k, 0) + 1
                    if self.step % a.log_every == 0 or self.step == self.total:
                        keys = sorted(sums)
                        vals = C.all_reduce_mean(torch.stack([sums[k] / counts[k] for k in keys]), env).tolist()
                        rate = meter.rate()
                        rec = {"step": self.step, "kimg": self.step * self.global_batch / 1000, **dict(zip(keys, vals)),
                               "add_weight": float(self.g.blend_weights().detach().mean()), "kimg_per_s": rate}
                        bad = [k for k in keys if not math.isfinite(rec[k])]
                        logger.write(rec)
                        if bar is not None:
                            bar.set_postfix_str(f"kimg {rec['kimg']:.2f} d {rec['d_face']:.3f}/{rec['d_style']:.3f}/"
                                                f"{rec['d_proj']:.3f} g {rec['g_face']:.3f}/{rec['g_style']:.3f}/"
                                                f"{rec['g_proj']:.3f} {C.format_rate(rate)}")
                        sums, counts = {}, {}
                        if bad:
                            raise TrainError(f"non-finite losses at step {self.step}: {', '.join(bad)}; "
                                               f"lower --lr or raise --r1")
                    if bar is not None:
                        bar.update(1)
                    if env.main and a.sample_every > 0 and self.step % a.sample_every == 0:
                        self.sample_grid()
                    if self.callback is not None:
                        self.callback(self)
                    stopping = C.any_process(stop.requested, env)
                    if self.step % a.save_every == 0 or self.step == self.total or stopping:
                        self.checkpoint()
                        last_saved = self.step
                    if stopping:
                        status = 130
                        break
        except KeyboardInterrupt:
            # raised mid-step without our handler (not the main thread): the step in progress may be
            # partly applied; save what there is (one process only: no collectives).  A second
            # Ctrl-C after the first means "quit now": nothing is saved.
            if not env.distributed and self.step != last_saved and not stop.requested:
                self.checkpoint()
            status = 130
        finally:
            if bar is not None:
                bar.close()
            logger.close()
            self.face_loader.close()
            self.style_loader.close()
        if env.main:
            log.info("%s at step %d (%.1f kimg): %s", "stopped" if status else "done", self.step,
                     self.step * self.global_batch / 1000, self.writer.latest)
        return status
