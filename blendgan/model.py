"""The public model: ``BlendGAN.from_pretrained(...)`` and its tensor-level methods."""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from . import checkpoint as ckpt_io
from . import defaults
from .controls import Strength, check_style_weights, face_weights
from .download import fetch_missing_defaults
from .errors import CheckpointError, UsageError
from .inversion import Inversion, Progress
from .inversion import invert as invert_face
from .models import Generator, PSPEncoder
from .runtime import resolve_device, resolve_dtype


def _check_image(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise UsageError(f"{what} must be a [N, 3, H, W] tensor in [-1, 1], got {shape}")
    if not x.is_floating_point():  # uint8 pixels would be read as values far outside [-1, 1]
        raise UsageError(f"{what} must be a floating-point tensor in [-1, 1] (see blendgan.io.to_tensor), "
                         f"got {x.dtype}")


def _match_batch(x: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if x.shape[0] == n:
        return x
    if x.shape[0] == 1:
        return x.expand(n, *x.shape[1:])
    raise UsageError(f"{what} has batch {x.shape[0]}, expected 1 or {n}")


class BlendGAN(nn.Module):
    """BlendGAN generator + style encoder (+ optional pSp face encoder).

    All image tensors are [N, 3, H, W] floats in [-1, 1]; latents are [N, 512] (z, z_embed)
    or [N, n_latent, 512] (W+).  Nothing here touches the global RNG: randomness comes from
    the ``generator`` arguments.
    """

    def __init__(self, generator: Generator, psp: PSPEncoder | None = None,
                 latent_avg: torch.Tensor | None = None, truncation: float | None = None):
        super().__init__()
        self.generator = generator
        self.psp = psp
        self.register_buffer("latent_avg", latent_avg, persistent=False)
        #: ``truncation`` stored in the checkpoint (the official scripts let it override the flag).
        self.stored_truncation = truncation
        self._mean_latent: torch.Tensor | None = None

    @classmethod
    def from_pretrained(cls, ckpt: str | os.PathLike, psp_encoder: str | os.PathLike | None = None,
                        device: str | torch.device | None = "cpu", size: int | None = None,
                        channel_multiplier: int | None = None,
                        dtype: torch.dtype | str = torch.float32, offline: bool | None = None) -> "BlendGAN":
        """Load ``blendgan.pt`` (and ``psp_encoder.pt``) unchanged; resolution is inferred.

        ``dtype``: compute precision — float32 (default; matches the official outputs),
        bfloat16 (fast on CPUs with AMX and on recent GPUs) or float16 (GPUs).  Raises :class:`blendgan.checkpoint.CheckpointError` (one line, naming the file) for a
        missing, damaged or mismatched file.

        The default paths (``pretrained_models/blendgan.pt``, ``psp_encoder.pt``) fetch
        themselves when missing (:func:`blendgan.download.fetch_missing_defaults`) unless
        ``offline`` (None: offline when ``BLENDGAN_OFFLINE=1``).
        """
        fetch_missing_defaults((ckpt, psp_encoder), offline=offline)
        g = ckpt_io.load_generator(ckpt, size=size, channel_multiplier=channel_multiplier)
        psp = ckpt_io.load_psp(psp_encoder, g.generator.n_latent) if psp_encoder else None
        model = cls(g.generator, psp, g.latent_avg, g.truncation)
        model = model.to(resolve_device(device), resolve_dtype(dtype)).eval()
        if model.device.type == "cpu" and model.psp is not None:
            # oneDNN runs the pSp convolutions ~10 % faster with NHWC weights (inputs are made
            # NHWC per call, see _encoder_input).  Every pSp tensor is copied out of the
            # memory-mapped file, so that the mapping is released rather than kept resident
            # beside the copies (the encoder reads all of its weights anyway).
            model.psp._apply(lambda t: t.clone(memory_format=torch.channels_last) if t.dim() == 4 else t.clone())
        return model

    # -- properties ------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.generator.size

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    @property
    def device(self) -> torch.device:
        return self.generator.input.input.device

    @property
    def dtype(self) -> torch.dtype:
        """Compute precision (float32 by default; inputs are cast to it, outputs come in it)."""
        return self.generator.input.input.dtype

    @property
    def has_style_encoder(self) -> bool:
        return hasattr(self.generator, "embedder")

    @property
    def default_truncation(self) -> float:
        """The checkpoint's ``truncation`` entry when present, else 0.75."""
        return defaults.TRUNCATION if self.stored_truncation is None else self.stored_truncation

    # -- encoders --------------------------------------------------------------------------
    def _encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] on the model's device and dtype; NHWC on a CPU (see from_pretrained)."""
        x = x.to(self.device, self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x

    def embed_style(self, style: torch.Tensor) -> torch.Tensor:
        """Style image [N, 3, H, W] in [-1, 1] (any H, W) -> z_embed [N, 512]."""
        _check_image(style, "style")
        if not self.has_style_encoder:
            raise CheckpointError("this checkpoint has no style encoder ('embedder.*' weights)")
        return self.generator.embedder(self._encoder_input(style))

    def encode_face(self, face: torch.Tensor) -> torch.Tensor:
        """Face image [N, 3, H, W] in [-1, 1] -> W+ [N, n_latent, 512] (``latent_avg`` added)."""
        _check_image(face, "face")
        if self.psp is None:
            raise RuntimeError("no pSp encoder loaded: pass psp_encoder=... to BlendGAN.from_pretrained")
        return self.psp(self._encoder_input(face))

    def invert(self, face: torch.Tensor, method: str = "optimize", steps: int = defaults.INVERT_STEPS, *,
               generator: torch.Generator | None = None, lr: float = defaults.INVERT_LR,
               tune_lr: float = defaults.INVERT_TUNE_LR, pull: float = defaults.INVERT_PULL, lpips: float = 0.0,
               identity: str | os.PathLike | nn.Module | None = None,
               identity_weight: float = defaults.INVERT_IDENTITY_WEIGHT,
               start: torch.Tensor | None = None, progress: Progress | None = None) -> Inversion:
        """Face [N, 3, H, W] in [-1, 1] -> :class:`blendgan.inversion.Inversion`: ``w_plus``
        [N, n_latent, 512], the ``model`` to synthesize it with (this one, or for ``'pti'`` a
        copy with tuned synthesis weights; N must be 1), ``loss`` [N] (reconstruction loss).
        ``method``: ``'psp'`` (:meth:`encode_face`), ``'optimize'`` or ``'pti'``; the rest: see
        :func:`blendgan.inversion.invert`."""
        return invert_face(self, face, method, steps, generator=generator, lr=lr, tune_lr=tune_lr, pull=pull,
                           lpips=lpips, identity=identity, identity_weight=identity_weight, start=start,
                           progress=progress)

    # -- latents ---------------------------------------------------------------------------
    def mean_latent(self, n: int = defaults.TRUNCATION_MEAN, *, generator: torch.Generator) -> torch.Tensor:
        """Mean of ``n`` mapped random z: [1, 512].  Draws ``randn(n, 512)`` from ``generator``."""
        if not isinstance(generator, torch.Generator):
            raise TypeError("mean_latent needs a torch.Generator (e.g. blendgan.runtime.make_generator(seed, device))")
        z = torch.randn(n, self.generator.style_dim, generator=generator, device=self.device).to(self.dtype)
        return self.generator.mapping(z).mean(0, keepdim=True)

    def truncation_latent(self, n: int = defaults.TRUNCATION_MEAN,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """Centre of truncation [1, 512]: the checkpoint's ``latent_avg`` when present.

        Otherwise the mean of ``n`` mapped samples drawn from ``generator``; without one a
        fixed seed (0) is used and the result is cached, so repeated calls agree.
        """
        if self.latent_avg is not None:
            return self.latent_avg
        if generator is not None:
            return self.mean_latent(n, generator=generator)
        if self._mean_latent is None or self._mean_latent.device != self.device:
            g = torch.Generator(device=self.device).manual_seed(defaults.MEAN_LATENT_SEED)
            self._mean_latent = self.mean_latent(n, generator=g)
        return self._mean_latent

    def face_w(self, z: torch.Tensor, truncation: float | None = None,
               truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
        """Face mapping with truncation: z [N, 512] -> w [N, 512].

        ``w = avg + t·(w − avg)``, skipped when ``t >= 1``; ``t`` defaults to
        :attr:`default_truncation`.
        """
        t = self.default_truncation if truncation is None else truncation
        w = self.generator.mapping(z.to(self.device, self.dtype))
        if t < 1:
            avg = self.truncation_latent() if truncation_latent is None else truncation_latent
            w = avg + t * (w - avg)
        return w

    def face_w_plus(self, z: torch.Tensor, truncation: float | None = None,
                    truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`face_w` broadcast to every layer: z [N, 512] -> W+ [N, n_latent, 512] (a view)."""
        return self.face_w(z, truncation, truncation_latent).unsqueeze(1).expand(-1, self.n_latent, -1)

    def _check_index(self, add_weight_index: int | None) -> None:
        if add_weight_index is not None and not 0 <= add_weight_index <= self.n_latent:
            raise UsageError(f"add_weight_index must be in 0..{self.n_latent} (or None), got {add_weight_index}")

    def face_weights(self, add_weight_index: int | None = None, strength: Strength = 1.0,
                     preserve_color: bool = False) -> torch.Tensor:
        """Per-layer face weights ``a'`` [1 or N, n_latent] of the blend for these controls
        (:mod:`blendgan.controls`): 1 = the face's W, 0 = the style's."""
        self._check_index(add_weight_index)
        a = self.generator.add_weight.detach().clamp(0.0, 1.0).reshape(1, self.n_latent)
        return face_weights(a, add_weight_index, strength, preserve_color)

    def style_w(self, z_embed: torch.Tensor, style_weights: Sequence[float] | torch.Tensor | None = None,
                batch: int | None = None) -> torch.Tensor:
        """Style codes z_embed [N, 512], or [N, K, 512] to mix K styles by ``style_weights`` [K]
        (normalised; default uniform) -> w_style [N, 512] (mapped, then mixed).  A batch of 1
        is broadcast to ``batch``."""
        if z_embed.ndim not in (2, 3) or z_embed.shape[-1] != self.generator.style_dim:
            raise UsageError(f"z_embed must be [N, {self.generator.style_dim}] or [N, K, {self.generator.style_dim}], "
                             f"got {tuple(z_embed.shape)}")
        z_embed = z_embed.to(self.device, self.dtype)
        if batch is not None:
            z_embed = _match_batch(z_embed, batch, "z_embed")
        if z_embed.ndim == 2:
            if style_weights is not None and len(style_weights) != 1:
                raise UsageError(f"style weights: 1 style needs 1 weight, got {len(style_weights)}")
            return self.generator.style_mapping(z_embed)
        n, k, d = z_embed.shape
        weights = check_style_weights(style_weights, k)
        w = self.generator.style_mapping(z_embed.reshape(n * k, d)).reshape(n, k, d)
        if weights is None:
            return w[:, 0]
        return (w * weights.to(w.device, w.dtype).view(1, k, 1)).sum(1)

    def blend(self, w_plus: torch.Tensor, z_embed: torch.Tensor | None, add_weight_index: int | None = None, *,
              strength: Strength = 1.0, preserve_color: bool = False,
              style_weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
        """Weighted blending of face W+ [N, n_latent, 512] with the style of z_embed [N or 1, 512]
        (or [N or 1, K, 512], K styles mixed by ``style_weights``):
        ``w_plus·a' + w_style·(1 − a')`` with ``a'`` = :meth:`face_weights`.  The defaults are the
        official blend, bit for bit."""
        a = self.face_weights(add_weight_index, strength, preserve_color)
        if z_embed is None:
            return w_plus
        if a.shape[0] not in (1, w_plus.shape[0]):
            raise UsageError(f"strength has {a.shape[0]} rows for a batch of {w_plus.shape[0]}")
        w_style = self.style_w(z_embed, style_weights, w_plus.shape[0]).unsqueeze(1)
        a = a.unsqueeze(-1).to(w_plus.dtype)
        return w_plus * a + w_style * (1 - a)

    # -- synthesis -------------------------------------------------------------------------
    def compile_synthesis(self, **options) -> "BlendGAN":
        """Run the synthesis network through ``torch.compile`` from now on (fused kernels;
        about 1.4x on the development CPU after a one-off compile of ~20 s per batch shape).
        Outputs match the eager path to float rounding.  Returns ``self``."""
        # kept out of the module tree: the compiled wrapper shares the generator's weights
        self.__dict__["_compiled"] = torch.compile(self.generator, **options)
        return self

    def synthesis(self, w_plus: torch.Tensor, noise=None, shared: int = 0, branches: int = 1) -> torch.Tensor:
        """The synthesis network on W+ [N, n_latent, 512] (compiled after :meth:`compile`);
        see :meth:`blendgan.models.Generator.forward` for ``noise``/``shared``/``branches``."""
        net = self.__dict__.get("_compiled")
        return (self.generator if net is None else net)(w_plus, noise, shared=shared, branches=branches)

    def synthesize(self, z: torch.Tensor | None = None, w_plus: torch.Tensor | None = None,
                   z_embed: torch.Tensor | None = None, truncation: float | None = None,
                   add_weight_index: int | None = None, noise: str = "stored",
                   generator: torch.Generator | None = None,
                   truncation_latent: torch.Tensor | None = None, *, strength: Strength = 1.0,
                   preserve_color: bool = False,
                   style_weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
        """Generate images [N, 3, size, size] (nominal range [-1, 1]).

        Give exactly one of ``z`` [N, 512] (a random face; truncation defaults to
        :attr:`default_truncation`) or ``w_plus`` [N, n_latent, 512] (e.g. from
        :meth:`encode_face`; no truncation unless one is given).  With ``z_embed`` [N or 1, 512]
        (or [N or 1, K, 512]: K styles mixed by ``style_weights``) the face is stylized by the
        weighted blending module; ``add_weight_index = i`` keeps the first i W+ layers pure
        face, ``strength`` scales the style (0 the face, 1 the official blend, more: further
        toward the style), ``preserve_color`` keeps the face's colours (see
        :mod:`blendgan.controls`).  ``noise``: ``'stored'`` (the checkpoint's fixed maps, as
        the official scripts) or ``'random'`` (drawn from ``generator``).
        """
        if (z is None) == (w_plus is None):
            raise UsageError("give exactly one of z or w_plus")
        if z is not None:
            if z.ndim != 2 or z.shape[1] != self.generator.style_dim:
                raise UsageError(f"z must be [N, {self.generator.style_dim}], got {tuple(z.shape)}")
            w_plus = self.face_w_plus(z, truncation, truncation_latent)
        else:
            if w_plus.ndim != 3 or w_plus.shape[1:] != (self.n_latent, self.generator.style_dim):
                raise UsageError(f"w_plus must be [N, {self.n_latent}, {self.generator.style_dim}], "
                                 f"got {tuple(w_plus.shape)}")
            w_plus = w_plus.to(self.device, self.dtype)
            if truncation is not None and truncation < 1:
                avg = self.truncation_latent() if truncation_latent is None else truncation_latent
                w_plus = avg.unsqueeze(1) + truncation * (w_plus - avg.unsqueeze(1))
        w_plus = self.blend(w_plus, z_embed, add_weight_index, strength=strength, preserve_color=preserve_color,
                            style_weights=style_weights)
        if noise == "stored":
            noises = None
        elif noise == "random":
            if generator is None:
                raise UsageError("noise='random' needs a generator (a torch.Generator on the model's device)")
            noises = self.generator.random_noise(w_plus.shape[0], generator)
        else:
            raise UsageError(f"noise must be 'stored' or 'random', got {noise!r}")
        return self.synthesis(w_plus, noises)
