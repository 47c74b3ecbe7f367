"""``train``: StyleGAN2 training extended to BlendGAN (face branch + style branch + WBM).

Per step, with B faces x_f and B artworks x_a (each process) and the artworks' style codes
e = E(x_a) from the frozen style encoder E (computed once for the whole artwork folder):

* face branch: z, z' ~ N(0, I) -> w = style(z) (style mixing with ``--mixing``: the W+ rows
  from a random crossover on come from w' = style(z')) -> natural image G(W+);
* style branch: w_s = embedding(e) -> stylized image G(a·W+ + (1 − a)·w_s), with the
  learned blend weights a = clamp(add_weight, 0, 1) [1, n_latent, 1] (the WBM; trained with a
  straight-through clamp and projected back into [0, 1], see
  :func:`~blendgan.train.modules.blend_weights_st`);
* with ``--style-only p``, a fraction p of the stylized images come from the style branch
  alone, G(w_s) (a = 0): the style mapping then learns from the first step, while a is
  still near 1 (the official runs have p = 0);
* D_face judges natural images against faces, D_style stylized images against artworks,
  and the projection discriminator D_proj judges (image, style code) pairs: real pairs
  (x_a, e), fake pairs (G_stylized, e) and mismatched pairs (x_a, e of another artwork);
* non-saturating logistic losses; lazy R1 on all three discriminators every
  ``--d-reg-every`` steps; path-length regularisation of G every ``--g-reg-every`` steps
  (on natural and stylized images); an EMA copy ``g_ema`` of G (:mod:`.losses`).

Checkpoints (``OUTDIR/checkpoints/{step:06d}.pt`` and ``latest.pt``, ``torch.load``-able with
``weights_only=True``) use the official layout: ``'g_ema'`` is a complete BlendGAN generator
state dict (style encoder included as ``embedder.*``), so ``BlendGAN.from_pretrained`` and
every ``blendgan`` command read them directly.  Besides: ``'g'`` (no ``embedder.*``),
``'d_face'``, ``'d_style'``, ``'d_proj'``, ``'g_optim'``, ``'d_optim'``, ``'g_scaler'``,
``'d_scaler'``, ``'pl_mean'``, ``'step'``, ``'args'`` (plain dict), ``'rng'`` (per process:
generator states as uint8 tensors), ``'loaders'`` (data positions), ``'world'``, ``'format'``.
"""
from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .. import io
from ..checkpoint import CheckpointError, infer_generator_config, load_file, weights_fingerprint
from ..errors import TrainError
from ..models import Generator, StyleEncoder
from ..models.discriminator import Discriminator, ProjectionDiscriminator
from ..runtime import DistEnv, derive_seed, make_generator, process_group, seeded_init
from . import losses
from .checkpoints import load_training_checkpoint, resolve_resume, rng_states, run_folder, set_rng_states
from .collectives import gather_objects
from .config import GANConfig, flag_name, resumed
from .data import BatchLoader, ImageSource, open_source, random_flip, to_float
from .encoder_weights import assign_style_encoder, init_vgg_random, load_style_encoder_state
from .loop import TrainingLoop
from .modules import GeneratorStep, ema_update, gram_vectors, project_add_weight, requires_grad
from .monitor import format_rate, image_grid

log = logging.getLogger("blendgan")

FORMAT = "blendgan-train/2"  # 2: d_proj is the official ProjectionDiscriminator
EMBED_BATCH = 16


def train_gan(config: GANConfig, *, given: Iterable[str] = frozenset(),
              callback: Callable[["GANTrainer"], None] | None = None) -> int:
    """Train BlendGAN (``blendgan train``); returns the exit status (130 when stopped by a signal).

    ``given`` names the settings set explicitly: with ``config.resume`` the others take the
    checkpoint's values (architecture settings that are given must match it), and with
    ``config.init`` the architecture settings not given are read from its generator.
    ``callback(trainer)``, if given, runs after every step (tests use it to interrupt).
    """
    given = frozenset(given)
    resume_path = resolve_resume(config.resume) if config.resume else None
    config = config.replace(outdir=run_folder(config.outdir, resume_path))
    saved = load_training_checkpoint(resume_path, FORMAT) if resume_path else None
    init = load_init(config.init) if config.init and saved is None else None
    if saved is not None:
        config = resumed(config, saved["args"], given)
    elif init is not None:
        config = architecture_from_init(config, init.get("g_ema") or init.get("g"), given)
    config.check()
    with process_group(config.device) as env:
        return GANTrainer(config, env, saved, resume_path, init, callback).run()


# -- starting points ------------------------------------------------------------------------------
def load_init(path) -> dict:
    """The checkpoint of ``--init`` (``weights_only``): it must hold generator weights."""
    try:
        obj = load_file(path)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    if not isinstance(obj, dict) or not any(isinstance(obj.get(k), dict) for k in ("g_ema", "g")):
        raise TrainError(f"{path}: --init needs a checkpoint with 'g_ema' (or 'g') weights")
    return obj


def architecture_from_init(config: GANConfig, init_sd: dict, given: frozenset[str]) -> GANConfig:
    """The architecture settings not given, read from ``--init``'s generator; a given one must
    agree with it (``channels`` excepted: the widths are then matched tensor by tensor)."""
    try:
        cfg = infer_generator_config(init_sd, config.init)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    inferred = {"size": cfg.size, "style_dim": cfg.style_dim, "n_mlp": cfg.n_mlp,
                "channels": ",".join(str(w) for _, w in cfg.channels)}
    changes = {}
    for k, v in inferred.items():
        if k not in given:
            changes[k] = v
        elif k != "channels" and getattr(config, k) != v:
            raise TrainError(f"{flag_name(k)} {getattr(config, k)} differs from --init's {v}")
    return config.replace(**changes)


def load_matching(module: nn.Module, sd: dict | None, what: str) -> int:
    """Copy the entries of ``sd`` whose name and shape match ``module``; returns how many."""
    if not isinstance(sd, dict):
        return 0
    own = module.state_dict()
    use = {k: v.float() for k, v in sd.items()
           if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) == tuple(own[k].shape)}
    module.load_state_dict(use, strict=False)
    log.info("--init: %d/%d tensors of %s", len(use), len(own), what)
    return len(use)


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
        if io.is_done(path):
            try:
                arr = np.load(path)
            except (OSError, ValueError):  # a damaged entry is recomputed
                arr = None
            if arr is not None and arr.shape == (n, encoder.style_dim) and np.isfinite(arr).all():
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
        try:
            with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, table.cpu().numpy())
        except OSError as exc:  # a full or read-only disk: the table is recomputed next time
            log.warning("%s: cannot write the style-code cache (%s)", path, exc.strerror or exc)
    env.barrier()
    return table


# -- training -------------------------------------------------------------------------------------
class GANTrainer(TrainingLoop):
    """One process of a ``train`` run: the models, their optimizers, the data and one step."""

    config: GANConfig

    def __init__(self, config: GANConfig, env: DistEnv, saved: dict | None, resume_path, init: dict | None,
                 callback=None):
        super().__init__(config, env, callback)
        c = config
        dev = env.device
        self.amp = bool(c.fp16 and dev.type == "cuda")
        if c.fp16 and not self.amp:
            log.warning("--fp16 is ignored on %s (CUDA only)", dev)
        arch = dict(channel_multiplier=c.channel_multiplier, channels=c.channel_widths)
        with seeded_init(derive_seed(c.seed, "init")):
            self.g = Generator(c.size, c.style_dim, c.n_mlp, style_encoder=False, **arch)
            self.d_face = Discriminator(c.size, **arch)
            self.d_style = Discriminator(c.size, **arch)
            self.d_proj = ProjectionDiscriminator(c.size, c.style_dim, **arch)
        with seeded_init(derive_seed(c.seed, "style-encoder-init")):
            self.encoder = StyleEncoder(style_dim=c.style_dim)
            init_vgg_random(self.encoder)  # replaced below when weights are given
        self.g_ema = copy.deepcopy(self.g)
        if saved is not None:
            self._load_models(saved)
        else:
            self._initial_weights(init)
        for m in (self.g, self.g_ema, self.d_face, self.d_style, self.d_proj, self.encoder):
            m.to(dev)
        self.g_ema.eval().requires_grad_(False)
        self.encoder.eval().requires_grad_(False)

        # foreach: one multi-tensor update instead of a loop over the tensors (the same numbers,
        # 2-3x faster on CPUs, where torch's default is the loop)
        self.g_optim = torch.optim.Adam(self._generator_groups(), foreach=True)
        d_params = [p for d in (self.d_face, self.d_style, self.d_proj) for p in d.parameters()]
        self.d_optim = torch.optim.Adam(d_params, foreach=True)
        self._set_hyperparameters()
        self.g_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        self.gstep = GeneratorStep(self.g)
        self.gstep_ddp, self.d_face_ddp, self.d_style_ddp, self.d_proj_ddp = (
            self._wrap(m) for m in (self.gstep, self.d_face, self.d_style, self.d_proj))

        # data
        self.faces = open_source(c.faces, c.size, "faces", c.cache, c.workers, env)
        self.styles = open_source(c.styles, c.size, "styles", c.cache, c.workers, env)
        if len(self.styles) < 2 and c.mismatch_weight > 0:
            # the only "other" artwork would be the same one: D_proj would be asked to call
            # one pair both real and fake
            log.warning("one artwork only: mismatched-pair negatives are off (--mismatch-weight 0)")
            self.config = c = c.replace(mismatch_weight=0.0)
        self.face_loader = BatchLoader(self.faces, c.batch, env, derive_seed(c.seed, "faces"))
        self.style_loader = BatchLoader(self.styles, c.batch, env, derive_seed(c.seed, "styles"))
        self.embeds = style_embeddings(self.encoder, self.styles, env, c.cache, c.style_pool)

        # randomness: per process, saved in checkpoints
        self.gens = {"latent": make_generator(derive_seed(c.seed, "latent", env.rank), dev),
                     "aug": make_generator(derive_seed(c.seed, "aug", env.rank), dev)}
        self.pl_mean = torch.zeros((), device=dev)
        if saved is not None:
            self._load_state(saved)
            log.info("resumed %s at step %d", resume_path, self.step)
        self.global_batch = c.batch * env.world
        self.total = math.ceil(c.kimg * 1000 / self.global_batch)
        self.ema_decay = 0.5 ** (self.global_batch / max(c.ema_kimg * 1000, 1e-8))

    # -- setup helpers -----------------------------------------------------------------------------
    def _wrap(self, module: nn.Module) -> nn.Module:
        if not self.env.distributed:
            return module
        dev = self.env.device
        return nn.parallel.DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None,
                                                   broadcast_buffers=False)

    def _initial_weights(self, init: dict | None) -> None:
        c = self.config
        if init is not None:
            g_sd = init.get("g") if isinstance(init.get("g"), dict) else init.get("g_ema")
            load_matching(self.g, g_sd, "g")
            load_matching(self.g_ema, init.get("g_ema") or g_sd, "g_ema")
            d_any = init.get("d")
            load_matching(self.d_face, init.get("d_face", d_any), "d_face")
            load_matching(self.d_style, init.get("d_style", d_any), "d_style")
            load_matching(self.d_proj, init.get("d_proj", d_any), "d_proj")
        if c.style_encoder:
            sd = load_style_encoder_state(c.style_encoder)
            has_vgg, _ = assign_style_encoder(self.encoder, sd, c.style_encoder, need_mlp=True)
            if not has_vgg:
                log.warning("%s has no VGG19 weights: the style encoder's VGG is random", c.style_encoder)
        elif init is not None and any(k.startswith("embedder.") for k in init.get("g_ema", {})):
            sd = load_style_encoder_state(c.init)
            assign_style_encoder(self.encoder, sd, c.init, need_mlp=True)
            log.info("--init: style encoder from %s", c.init)
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

    def _generator_groups(self) -> list[dict]:
        """G's parameters for Adam: one group, or with ``--style-mapping-lr`` k != 1 a second
        group, the style mapping network (``embedding.*``), whose rate is k times the others'."""
        if self.config.style_mapping_lr == 1:
            return [{"params": list(self.g.parameters())}]
        mapping = set(id(p) for p in self.g.embedding.parameters())
        return [{"params": [p for p in self.g.parameters() if id(p) not in mapping]},
                {"params": list(self.g.embedding.parameters())}]

    def _set_hyperparameters(self) -> None:
        """Adam's learning rate and betas from the settings, corrected for lazy regularization
        (StyleGAN2: ratio k/(k+1) for a regularizer applied every k steps)."""
        c = self.config
        g_ratio = c.g_reg_every / (c.g_reg_every + 1) if c.path_regularize > 0 else 1.0
        d_ratio = c.d_reg_every / (c.d_reg_every + 1) if c.r1 > 0 else 1.0
        for optim, ratio in ((self.g_optim, g_ratio), (self.d_optim, d_ratio)):
            for i, group in enumerate(optim.param_groups):
                scale = c.style_mapping_lr if optim is self.g_optim and i == 1 else 1.0
                group["lr"], group["betas"] = c.lr * ratio * scale, (0.0, 0.99 ** ratio)
                group["foreach"] = True  # also for checkpoints written before it was

    def _load_state(self, saved: dict) -> None:
        env = self.env
        self.g_optim.load_state_dict(saved["g_optim"])
        self.d_optim.load_state_dict(saved["d_optim"])
        self._set_hyperparameters()  # the saved groups carry the old run's; the settings win
        self.g_scaler.load_state_dict(saved["g_scaler"])
        self.d_scaler.load_state_dict(saved["d_scaler"])
        self.pl_mean.fill_(float(saved["pl_mean"]))
        self.step = int(saved["step"])
        self.face_loader.load_state_dict(saved["loaders"]["faces"])
        self.style_loader.load_state_dict(saved["loaders"]["styles"])
        if int(saved.get("world", 1)) == env.world and len(saved["rng"]) == env.world:
            try:
                set_rng_states(self.gens, saved["rng"][env.rank])
            except (RuntimeError, KeyError) as exc:  # e.g. CPU states restored on a CUDA device
                log.warning("random streams not restored (%s): reseeded from --seed and the step", exc)
                self._reseed()
        else:
            log.warning("resuming with %d processes instead of %s: random streams reseeded from --seed and "
                        "the step (data order and weights continue exactly)", env.world, saved.get("world"))
            self._reseed()

    def _reseed(self) -> None:
        for name, g in self.gens.items():
            g.manual_seed(derive_seed(self.config.seed, name, self.env.rank, "step", self.step))

    # -- random draws ------------------------------------------------------------------------------
    def latents(self, b: int, stylized: bool):
        """z1, z2 [b, D], cross [b], noise maps for 2b (b) images, from the latent stream."""
        gen, dev, c = self.gens["latent"], self.env.device, self.config
        n_latent = self.g.n_latent
        z1 = torch.randn(b, c.style_dim, generator=gen, device=dev)
        z2 = torch.randn(b, c.style_dim, generator=gen, device=dev)
        mix = torch.rand(b, generator=gen, device=dev) < c.mixing
        cross = torch.randint(1, n_latent, (b,), generator=gen, device=dev)
        cross = torch.where(mix, cross, torch.full_like(cross, n_latent))
        noise = self.g.random_noise(2 * b if stylized else b, gen)
        return z1, z2, cross, noise

    def style_only(self, b: int) -> torch.Tensor | None:
        """Which of ``b`` stylized samples the style branch makes alone ([b] bool, from the
        latent stream), or None with ``--style-only 0`` (no draw: the official runs)."""
        if self.config.style_only <= 0:
            return None
        gen = self.gens["latent"]
        return torch.rand(b, generator=gen, device=gen.device) < self.config.style_only

    def mismatched(self, idx: np.ndarray) -> torch.Tensor:
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

    def train_step(self) -> dict[str, torch.Tensor]:
        c, env, dev = self.config, self.env, self.env.device
        metrics: dict[str, torch.Tensor] = {}
        face_b, style_b = self.face_loader.next(), self.style_loader.next()
        real_face = random_flip(to_float(face_b.images, dev), self.gens["aug"]) if c.flip else to_float(face_b.images, dev)
        real_art = random_flip(to_float(style_b.images, dev), self.gens["aug"]) if c.flip else to_float(style_b.images, dev)
        e = self.embeds[torch.as_tensor(style_b.indices, device=dev)]
        e_mis = self.mismatched(style_b.indices) if c.mismatch_weight > 0 else None
        b = real_face.shape[0]
        ds = (self.d_face, self.d_style, self.d_proj)

        # -- discriminators
        requires_grad(self.g, False)
        for d in ds:
            requires_grad(d, True)
        with torch.no_grad():
            z1, z2, cross, noise = self.latents(b, True)
            fake, _ = self.gstep(z1, z2, cross, e, noise, self.style_only(b))
        with self._autocast():
            f_real, f_fake = self.d_face_ddp(real_face), self.d_face_ddp(fake[:b])
            s_real, s_fake = self.d_style_ddp(real_art), self.d_style_ddp(fake[b:])
            # the artworks' trunk features serve their own codes and the mismatched ones (one pass)
            if e_mis is not None:
                p_real, p_mis = self.d_proj_ddp(real_art, e, e_mis)
            else:
                p_real, p_mis = self.d_proj_ddp(real_art, e), None
            p_fake = self.d_proj_ddp(fake[b:], e)
        d_face_loss = losses.d_logistic(f_real, f_fake)
        d_style_loss = losses.d_logistic(s_real, s_fake)
        d_proj_loss = losses.d_logistic(p_real, p_fake)
        if p_mis is not None:
            d_proj_loss = d_proj_loss + c.mismatch_weight * losses.d_fake(p_mis)
        d_loss = c.face_weight * d_face_loss + c.style_weight * d_style_loss + c.proj_weight * d_proj_loss
        self.d_optim.zero_grad(set_to_none=True)
        self.d_scaler.scale(d_loss).backward()
        self.d_scaler.step(self.d_optim)
        self.d_scaler.update()
        metrics.update(d_face=d_face_loss, d_style=d_style_loss, d_proj=d_proj_loss,
                       face_real=f_real.float().mean(), face_fake=f_fake.float().mean(),
                       style_real=s_real.float().mean(), style_fake=s_fake.float().mean(),
                       proj_real=p_real.float().mean(), proj_fake=p_fake.float().mean())

        if c.r1 > 0 and self.step % c.d_reg_every == 0:
            rf = real_face.detach().requires_grad_(True)
            ra = real_art.detach().requires_grad_(True)
            f_pred, s_pred, p_pred = self.d_face_ddp(rf), self.d_style_ddp(ra), self.d_proj_ddp(ra, e)
            r1_face = losses.r1_penalty(f_pred, rf)
            r1_style = losses.r1_penalty(s_pred, ra)
            r1_proj = losses.r1_penalty(p_pred, ra)
            r1_loss = c.r1 / 2 * c.d_reg_every * (r1_face + r1_style + r1_proj)
            # the 0·D terms tie every parameter (the last biases too) into the graph, for DDP
            r1_loss = r1_loss + 0 * (f_pred[0, 0] + s_pred[0, 0] + p_pred[0, 0])
            self.d_optim.zero_grad(set_to_none=True)
            r1_loss.backward()
            self.d_optim.step()
            metrics.update(r1_face=r1_face, r1_style=r1_style, r1_proj=r1_proj)

        # -- generator
        requires_grad(self.g, True)
        for d in ds:
            requires_grad(d, False)
        z1, z2, cross, noise = self.latents(b, True)
        fake, _ = self.gstep_ddp(z1, z2, cross, e, noise, self.style_only(b))  # G stays float32 (no clamping for fp16)
        with self._autocast():
            # the discriminators' own modules: no DDP bookkeeping for parameters without gradients
            g_face = losses.g_nonsaturating(self.d_face(fake[:b]))
            g_style = losses.g_nonsaturating(self.d_style(fake[b:]))
            g_proj = losses.g_nonsaturating(self.d_proj(fake[b:], e))
        g_loss = c.face_weight * g_face + c.style_weight * g_style + c.proj_weight * g_proj
        self.g_optim.zero_grad(set_to_none=True)
        self.g_scaler.scale(g_loss).backward()
        self.g_scaler.step(self.g_optim)
        self.g_scaler.update()
        project_add_weight(self.g)
        metrics.update(g_face=g_face, g_style=g_style, g_proj=g_proj)

        if c.path_regularize > 0 and self.step % c.g_reg_every == 0:
            pb = max(1, b // c.path_batch_shrink)
            z1, z2, cross, noise = self.latents(pb, True)
            img, w_plus = self.gstep_ddp(z1, z2, cross, e[:pb], noise)
            pl_penalty, pl_mean = losses.path_length_penalty(img, w_plus, self.pl_mean, c.pl_decay,
                                                              self.gens["latent"], env)
            pl_loss = c.path_regularize * c.g_reg_every * pl_penalty + 0 * img[0, 0, 0, 0]
            self.g_optim.zero_grad(set_to_none=True)
            pl_loss.backward()
            self.g_optim.step()
            project_add_weight(self.g)
            self.pl_mean = pl_mean.detach()
            metrics.update(pl=pl_penalty, pl_mean=self.pl_mean)

        ema_update(self.g_ema, self.g, self.ema_decay)
        return metrics

    # -- the loop's hooks --------------------------------------------------------------------------
    def log_record(self, means: dict[str, float], rate: float) -> dict:
        return {"step": self.step, "kimg": self.kimg, **means,
                "add_weight": float(self.g.blend_weights().detach().mean()), "kimg_per_s": rate}

    def progress(self, record: dict, rate: float) -> str:
        r = record
        return (f"kimg {r['kimg']:.2f} d {r['d_face']:.3f}/{r['d_style']:.3f}/{r['d_proj']:.3f} "
                f"g {r['g_face']:.3f}/{r['g_style']:.3f}/{r['g_proj']:.3f} {format_rate(rate)}")

    def check_record(self, means: dict[str, float]) -> None:
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            raise TrainError(f"non-finite losses at step {self.step}: {', '.join(bad)}; lower --lr or raise --r1")

    def before_loop(self) -> None:
        if self.env.main and self.step == 0 and self.config.sample_every > 0:
            self.sample_grid()

    def after_step(self, metrics: dict[str, torch.Tensor]) -> None:
        if self.env.main and self.config.sample_every > 0 and self.step % self.config.sample_every == 0:
            self.sample_grid()

    def position(self) -> str:
        return f"step {self.step} ({self.kimg:.1f} kimg)"

    def close(self) -> None:
        self.face_loader.close()
        self.style_loader.close()

    # -- outputs -----------------------------------------------------------------------------------
    def checkpoint(self) -> Path | None:
        """Write ``checkpoints/{step}.pt`` and ``latest.pt`` (all processes must call it)."""
        rng = gather_objects({k: v.cpu() for k, v in rng_states(self.gens).items()}, self.env)
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
                "step": self.step, "kimg": self.kimg, "args": self.config.to_dict(),
                "rng": rng, "world": self.env.world,
                "loaders": {"faces": self.face_loader.state_dict(), "styles": self.style_loader.state_dict()},
            }, self.step)
        self.env.barrier()
        return path

    @torch.no_grad()
    def sample_grid(self) -> Path:
        """``samples/{step:06d}.png``: row 1 natural faces of fixed codes; then one row per fixed
        artwork (shown in the first column), the same faces stylized with its style code."""
        c, dev = self.config, self.env.device
        gen = make_generator(derive_seed(c.seed, "samples"), dev)
        z = torch.randn(c.n_sample, c.style_dim, generator=gen, device=dev)
        n_art = min(c.n_sample_styles, len(self.styles))
        art_idx = torch.randperm(len(self.styles), generator=make_generator(derive_seed(c.seed, "sample-art")))[:n_art]
        g = self.g_ema
        w_plus = g.mapping(z).unsqueeze(1).expand(-1, g.n_latent, -1)
        rows = [np.concatenate([np.full((1, c.size, c.size, 3), 255, np.uint8), io.to_uint8(g(w_plus))])]
        arts = self.styles.get(art_idx.tolist())
        for j, i in enumerate(art_idx.tolist()):
            w_s = g.style_mapping(self.embeds[i:i + 1].expand(c.n_sample, -1))
            rows.append(np.concatenate([arts[j:j + 1], io.to_uint8(g(g.blend(w_plus, w_s)))]))
        return io.write_image(self.outdir / "samples" / f"{self.step:06d}.png", image_grid(rows))
