"""The training objectives: StyleGAN2's non-saturating logistic GAN losses, the R1 and
path-length regularisers, and NT-Xent (SimCLR) for the style encoder.

Every loss is computed in float32 (the discriminators may run in fp16 under autocast) and
returns a scalar tensor.  The trainers call these through this module's namespace, so a test
can swap one (e.g. a generator loss with its sign flipped) and see training fail.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..runtime import DistEnv
from .collectives import all_reduce_mean, gather_with_grad


# -- adversarial ----------------------------------------------------------------------------------
def d_logistic(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator non-saturating logistic loss: softplus(−D(real)) + softplus(D(fake)).

    ``real`` [N, 1], ``fake`` [M, 1]: the discriminator's logits.
    """
    return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()


def d_fake(pred: torch.Tensor) -> torch.Tensor:
    """The fake half of :func:`d_logistic` alone, softplus(D(x)): for extra negatives
    (BlendGAN's mismatched (artwork, other style code) pairs)."""
    return F.softplus(pred.float()).mean()


def g_nonsaturating(fake: torch.Tensor) -> torch.Tensor:
    """Generator non-saturating loss: softplus(−D(fake)), ``fake`` [N, 1] logits."""
    return F.softplus(-fake.float()).mean()


# -- regularisers ---------------------------------------------------------------------------------
def r1_penalty(pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """R1: E‖∇ₓ D(x)‖² over real images ``inputs`` [N, 3, S, S] (differentiable)."""
    grad, = torch.autograd.grad(pred.sum(), inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def path_length_penalty(images: torch.Tensor, w_plus: torch.Tensor, pl_mean: torch.Tensor, decay: float,
                        generator: torch.Generator, env: DistEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2's path-length regulariser.

    ``images`` [N, 3, S, S] made from ``w_plus`` [N, n_latent, D].  With y ~ N(0, I)/S drawn
    from ``generator``, the length of J_wᵀ y per sample (the gradient of <G(w), y> w.r.t. W+,
    summed over D, averaged over the rows) is pulled towards its running mean ``pl_mean``,
    which moves ``decay`` of the way to this batch's mean (over every process).

    Returns (penalty E(length − mean)², differentiable; the updated mean).
    """
    noise = torch.randn(images.shape, generator=generator, device=images.device) / math.sqrt(
        images.shape[2] * images.shape[3])
    grad, = torch.autograd.grad((images * noise).sum(), w_plus, create_graph=True)
    lengths = grad.pow(2).sum(2).mean(1).sqrt()
    batch_mean = all_reduce_mean(lengths.detach().mean(), env)
    new_mean = pl_mean + decay * (batch_mean - pl_mean)
    return (lengths - new_mean).pow(2).mean(), new_mean


# -- contrastive ----------------------------------------------------------------------------------
def nt_xent(p1: torch.Tensor, p2: torch.Tensor, temperature: float, env: DistEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent (normalised temperature-scaled cross entropy) of two views [B, D] each.

    Keys are the views of every process (gathered with gradients).  For view 1 of sample i the
    positive is view 2 of sample i; every other key but itself is a negative.
    Returns (loss, top-1 accuracy of finding the positive).
    """
    b = p1.shape[0]
    z1, z2 = F.normalize(p1.float(), dim=1), F.normalize(p2.float(), dim=1)
    k1, k2 = gather_with_grad(z1, env), gather_with_grad(z2, env)
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
