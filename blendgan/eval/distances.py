"""Distances between sets of image features, and the spread of features within sets.

All functions take numpy arrays of features [N, D] (one row per image) and compute in
float64.  The estimators are the standard ones, so the numbers compare with other tools:

* :func:`frechet_distance`: FID (Heusel et al., 2017) when the features are Inception's:
  ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½, covariances with N − 1 in the denominator;
* :func:`kernel_distance`: KID (Bińkowski et al., 2018): the unbiased MMD² with the cubic
  polynomial kernel k(x, y) = (xᵀy / D + 1)³, averaged over random subsets (torch-fidelity's
  subset draws: ``numpy.random.RandomState(seed)``, two draws per subset without replacement);
* :func:`pairwise_diversity`: the mean distance between the outputs made for one input
  (BlendGAN, after StarGAN v2, reports it with LPIPS as the distance);
* :func:`style_consistency`: how well outputs' style codes point back at their reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError


def _features(x, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise UsageError(f"{what}: expected features [N, D], got shape {arr.shape}")
    return arr


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased) of features [N, D], N >= 2."""
    f = _features(features, "features")
    if f.shape[0] < 2:
        raise UsageError(f"at least 2 images are needed for a covariance, got {f.shape[0]}")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding noise cut)."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    tr (Σ₁Σ₂)^½ is computed as tr (Σ₁^½ Σ₂ Σ₁^½)^½: the same eigenvalues, from a symmetric
    matrix, so it stays real without a complex square root.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise UsageError(f"statistics of different widths: {mu1.shape} vs {mu2.shape}")
    root1 = _sqrt_psd(s1)
    eig = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def frechet_distance(features1, features2) -> float:
    """FID-style Fréchet distance between two feature sets [N1, D] and [N2, D]."""
    return frechet_from_statistics(*gaussian_statistics(features1), *gaussian_statistics(features2))


def polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                    coef0: float = 1.0) -> float:
    """Unbiased MMD² of two equal-sized samples [m, D] with k(a, b) = (γ aᵀb + coef0)^degree
    (γ = 1/D by default): within-set sums leave the diagonal out, the cross term keeps it."""
    m = x.shape[0]
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    k_xx = (x @ x.T * gamma + coef0) ** degree
    k_yy = (y @ y.T * gamma + coef0) ** degree
    k_xy = (x @ y.T * gamma + coef0) ** degree
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


@dataclass(frozen=True)
class KernelDistance:
    """KID over subsets: mean and standard deviation of the subsets' MMD² values."""
    mean: float
    std: float
    subsets: int
    subset_size: int


def kernel_distance(features1, features2, subsets: int = 100, subset_size: int = 1000, seed: int = 2020,
                    degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> KernelDistance:
    """KID between feature sets [N1, D] and [N2, D].

    ``subset_size`` is cut to the smaller set's size (a whole set is one subset); each of
    ``subsets`` subsets draws ``subset_size`` rows of each set without replacement.
    """
    f1, f2 = _features(features1, "features 1"), _features(features2, "features 2")
    if f1.shape[1] != f2.shape[1]:
        raise UsageError(f"feature widths differ: {f1.shape[1]} vs {f2.shape[1]}")
    size = min(subset_size, f1.shape[0], f2.shape[0])
    if size < 2:
        raise UsageError(f"at least 2 images per set are needed for KID, got {f1.shape[0]} and {f2.shape[0]}")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        a = f1[rng.choice(f1.shape[0], size, replace=False)]
        b = f2[rng.choice(f2.shape[0], size, replace=False)]
        values[i] = polynomial_mmd2(a, b, degree, gamma, coef0)
    return KernelDistance(float(values.mean()), float(values.std()), subsets, size)


def pairwise_diversity(groups) -> float:
    """Mean Euclidean distance between the members of each group, averaged over groups.

    ``groups`` [G, K, D]: K outputs made from one input (e.g. one face under K styles), K >= 2.
    """
    g = np.asarray(groups, dtype=np.float64)
    if g.ndim != 3 or g.shape[1] < 2:
        raise UsageError(f"diversity needs groups [G, K>=2, D], got shape {g.shape}")
    k = g.shape[1]
    diff = g[:, :, None, :] - g[:, None, :, :]                    # [G, K, K, D]
    dist = np.sqrt((diff ** 2).sum(-1))                           # [G, K, K]
    return float(dist.sum((1, 2)).mean() / (k * (k - 1)))


@dataclass(frozen=True)
class StyleConsistency:
    """How outputs' style codes relate to the reference codes they were made with.

    ``accuracy``: the share of outputs whose most similar reference (cosine) is their own;
    ``margin``: mean cosine to the own reference minus mean cosine to the other references;
    ``chance``: the accuracy of guessing (1 / number of references).
    """
    accuracy: float
    margin: float
    chance: float


def style_consistency(output_codes, reference_codes, reference_of) -> StyleConsistency:
    """``output_codes`` [N, D] made with references ``reference_of`` [N] (indices into
    ``reference_codes`` [R, D], R >= 2)."""
    out = _features(output_codes, "output codes")
    ref = _features(reference_codes, "reference codes")
    idx = np.asarray(reference_of, dtype=np.int64)
    if ref.shape[0] < 2 or idx.shape != (out.shape[0],):
        raise UsageError(f"style consistency needs >= 2 references and one index per output, got "
                         f"{ref.shape[0]} references, {idx.shape} indices for {out.shape[0]} outputs")
    out = out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True).clip(1e-12)
    cos = out @ ref.T                                             # [N, R]
    own = cos[np.arange(len(idx)), idx]
    others = (cos.sum(1) - own) / (ref.shape[0] - 1)
    return StyleConsistency(float((cos.argmax(1) == idx).mean()), float((own - others).mean()),
                            1.0 / ref.shape[0])
