"""PiCIE's evaluation clustering: k-means on pixel features, then Hungarian matching.

PiCIE (and STEGO) score unsupervised segmentation by clustering the model's L2-normalised pixel
features of the whole evaluation set into as many clusters as classes (cosine k-means), labelling
every pixel with its nearest centroid (cosine logits upsampled bilinearly to the label map, then
argmax), counting (cluster, class) pixels over all images and matching clusters one-to-one to
classes with the Hungarian algorithm. The prototypes play no part; indexing.scores.metrics'
hungarian_scores is the prototype-clustering variant that this project reports beside it.
Differences from PiCIE's code (full-batch spherical k-means instead of its mini-batch k-means
with unnormalised centroids) are listed in docs/FAITHFULNESS.md.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from indexing.scores.metrics import (
    SegmentationScores,
    kmeans_cosine,
    match_clusters,
    scores_from_mapping,
)
from model.transforms import Preprocessed, assign_pixels


def fit_centroids(
    features: np.ndarray,
    n_clusters: int = 27,
    seed: int = 0,
    max_points: int = 2_000_000,
    restarts: int = 3,
) -> np.ndarray:
    """Cosine k-means centroids (n, D) float32, L2-normalised, of features (N, D); n is
    n_clusters, or N when fewer points than that are given (tiny test sets).

    Above max_points rows a seeded random subset is clustered (memory and time); PiCIE uses
    every pixel through mini-batches. Deterministic for a given seed.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    if len(x) > max_points:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))]
    n_clusters = min(n_clusters, len(x))
    labels = kmeans_cosine(x, n_clusters, seed=seed, restarts=restarts)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    members = np.zeros((n_clusters, len(x)), dtype=np.float32)
    members[labels, np.arange(len(x))] = 1.0
    centres = members @ x  # (n_clusters, D) sums of the members
    return centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)


def cluster_map(
    features: torch.Tensor, info: Preprocessed, stride: int, centroids: np.ndarray
) -> np.ndarray:
    """One image's cluster of each pixel, (H, W) int16 at info.image_size: cosine logits of the
    cells' features (D, h, w) to the centroids, upsampled bilinearly, argmax (PiCIE's eval)."""
    c = torch.from_numpy(np.asarray(centroids, dtype=np.float32)).to(features.device)
    logits = torch.einsum("nd,dhw->nhw", c, F.normalize(features.float(), dim=0))  # (n, h, w)
    return assign_pixels(logits, info, stride)[0]


def picie_scores(cluster_counts: np.ndarray) -> SegmentationScores:
    """Scores of a (clusters, L) pixel histogram under one-to-one Hungarian matching; `mapping`
    is each cluster's class (-1 for clusters left over when there are more than classes)."""
    counts = np.asarray(cluster_counts, dtype=np.int64)
    return scores_from_mapping(counts, match_clusters(counts))
