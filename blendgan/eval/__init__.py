"""Evaluation: FID, KID, diversity and style consistency (``blendgan eval``).

:mod:`.distances` holds the estimators on feature arrays, :mod:`.features` the feature
networks (Inception via torch-fidelity, or any module), :mod:`.evaluate` the image sets and
the sampling of a model.
"""
from .distances import (KernelDistance, StyleConsistency, frechet_distance, frechet_from_statistics,
                        gaussian_statistics, kernel_distance, pairwise_diversity, style_consistency)
from .evaluate import KIDSettings, compare, compare_features, evaluate_model, load_images
from .features import INCEPTION, FeatureNetwork, feature_network

__all__ = ["INCEPTION", "FeatureNetwork", "KIDSettings", "KernelDistance", "StyleConsistency", "compare",
           "compare_features", "evaluate_model", "feature_network", "frechet_distance", "frechet_from_statistics",
           "gaussian_statistics", "kernel_distance", "load_images", "pairwise_diversity", "style_consistency"]
