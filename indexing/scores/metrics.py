"""Unsupervised semantic segmentation scores of prototype assignments.

Everything derives from one streaming histogram, counts[k, c] = number of labelled pixels whose
argmax prototype is k and whose true class is c (K x L, int64; L classes, as C means channels).
Two ways to turn prototypes into class predictions:
- majority vote: each prototype predicts its dominant class (many-to-one);
- Hungarian (docs/COCOSTUFF27.md, PiCIE/STEGO protocol): prototypes are grouped into L
  clusters by cosine k-means weighted by their pixel counts (dead prototypes left out) and
  clusters are matched one-to-one to classes, maximising matched pixels. PiCIE's own variant,
  which clusters pixel features rather than prototypes, is indexing.scores.picie.
Scores: IoU_c = TP / (TP + FP + FN), mIoU = nan-mean over classes, pixel accuracy = sum TP / all
labelled pixels, all as fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from indexing.scores.cocostuff import IGNORE_INDEX


class ConfusionAccumulator:
    """Streaming (prototype, class) pixel histogram; `counts` is (K, L) int64."""

    def __init__(self, num_prototypes: int, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_prototypes = num_prototypes  # K
        self.num_classes = num_classes  # C
        self.ignore_index = ignore_index  # label value never counted
        self.counts = np.zeros((num_prototypes, num_classes), dtype=np.int64)

    def update(self, assignment: np.ndarray, labels: np.ndarray) -> None:
        """Add one image: assignment (H, W) int prototype 0..K-1, labels (H, W) int class
        0..C-1 or ignore_index. Any matching shapes work; pixels are counted independently."""
        assignment, labels = np.asarray(assignment), np.asarray(labels)
        if assignment.shape != labels.shape:
            raise ValueError(
                f"assignment shape {assignment.shape} != labels shape {labels.shape}; "
                "resize one to the other before updating"
            )
        keep = labels != self.ignore_index
        k = assignment[keep].astype(np.int64)
        c = labels[keep].astype(np.int64)
        _check_range(k, self.num_prototypes, "prototype")
        _check_range(c, self.num_classes, "class")
        flat = np.bincount(k * self.num_classes + c, minlength=self.counts.size)
        self.counts += flat.reshape(self.counts.shape)


def _check_range(values: np.ndarray, size: int, what: str) -> None:
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(
            f"{what} index out of range [0, {size}): min {values.min()}, max {values.max()}"
        )


@dataclass(frozen=True, eq=False)  # eq=False: array fields make == ambiguous
class SegmentationScores:
    miou: float  # nan-mean of per_class_iou, in [0, 1]
    pixel_accuracy: float  # sum TP / labelled pixels, in [0, 1] (nan with no labelled pixels)
    per_class_iou: np.ndarray  # (L,) float64 in [0, 1]; nan: class absent and never predicted
    mapping: np.ndarray  # (K,) int64 predicted class of each prototype, -1 = unmapped

    def to_dict(
        self, class_names: Sequence[str], class_is_thing: Sequence[bool] | None = None
    ) -> dict:
        """JSON-ready dict (plain floats, nan -> None); things/stuff mIoU when flags given."""
        if len(class_names) != len(self.per_class_iou):
            raise ValueError(f"{len(class_names)} names for {len(self.per_class_iou)} classes")
        if len(set(class_names)) != len(class_names):
            raise ValueError("class names must be unique to serve as keys")
        out = {
            "miou": _json_float(self.miou),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "per_class_iou": {
                name: _json_float(iou) for name, iou in zip(class_names, self.per_class_iou)
            },
            "mapping": [int(c) for c in self.mapping],
        }
        if class_is_thing is not None:
            things, stuff = split_miou(self.per_class_iou, class_is_thing)
            out["things_miou"], out["stuff_miou"] = _json_float(things), _json_float(stuff)
        return out


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _nanmean(values: np.ndarray) -> float:
    """Mean over non-nan entries; nan (without numpy's warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def split_miou(per_class_iou: np.ndarray, class_is_thing: Sequence[bool]) -> tuple[float, float]:
    """(things mIoU, stuff mIoU): nan-means of per_class_iou (L,) over each group."""
    is_thing = np.asarray(class_is_thing, dtype=bool)
    if is_thing.shape != per_class_iou.shape:
        raise ValueError(f"{is_thing.size} thing flags for {per_class_iou.size} classes")
    return _nanmean(per_class_iou[is_thing]), _nanmean(per_class_iou[~is_thing])


def scores_from_mapping(counts: np.ndarray, mapping: np.ndarray) -> SegmentationScores:
    """Scores when prototype k predicts class mapping[k] (-1: predicts nothing).

    counts (K, L) int; mapping (K,) int in -1..L-1. Pixels of an unmapped prototype are false
    negatives of their true class and false positives of none.
    """
    counts = np.asarray(counts, dtype=np.int64)
    mapping = np.asarray(mapping, dtype=np.int64)
    num_classes = counts.shape[1]
    predicted = np.zeros((num_classes, num_classes), dtype=np.int64)  # (predicted, true)
    mapped = mapping >= 0
    np.add.at(predicted, mapping[mapped], counts[mapped])
    tp = np.diag(predicted)
    fp = predicted.sum(axis=1) - tp
    fn = counts.sum(axis=0) - tp  # includes unmapped prototypes' pixels
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
    total = counts.sum()
    accuracy = float(tp.sum() / total) if total else float("nan")
    return SegmentationScores(_nanmean(iou), accuracy, iou, mapping)


def prototype_purity(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dominant class (K,) int64 (-1 without labelled pixels) and purity (K,) float64 =
    dominant-class pixels / labelled pixels of the prototype, in [0, 1] (nan without pixels)."""
    counts = np.asarray(counts, dtype=np.int64)
    totals = counts.sum(axis=1)
    dominant = np.where(totals > 0, counts.argmax(axis=1), -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(totals > 0, counts.max(axis=1) / np.maximum(totals, 1), np.nan)
    return dominant.astype(np.int64), purity


def majority_vote_scores(counts: np.ndarray) -> SegmentationScores:
    """Each prototype predicts its dominant class; counts (K, L). Prototypes without labelled
    pixels are unmapped (-1). Many prototypes may share a class (upper bound of one-to-one)."""
    dominant, _ = prototype_purity(counts)
    return scores_from_mapping(counts, dominant)


def hungarian_scores(
    counts: np.ndarray, prototype_vectors: np.ndarray | None = None, seed: int = 0
) -> SegmentationScores:
    """PiCIE/STEGO protocol on prototypes: cluster them into L groups, match groups to classes.

    counts (K, L) int histogram; prototype_vectors (K, D) float (e.g. the teacher's prototype
    embeddings) or None. Prototypes without labelled pixels (dead on this set) take no part and
    predict nothing. When at most C prototypes are live each is its own cluster. Otherwise cosine
    k-means (`kmeans_cosine`, seeded) groups the live prototype vectors into L clusters, each
    weighted by its pixel count, so that a prototype weighs as much as the pixels it stands for
    (PiCIE clusters pixels); without vectors it groups the prototypes' class-histogram rows
    instead (this peeks at the labels, so it is an optimistic variant). The C' x C cluster
    histogram is matched one-to-one to classes by linear_sum_assignment (maximise matched
    pixels); `mapping` gives each prototype its cluster's class (-1 for dead prototypes).
    """
    counts = np.asarray(counts, dtype=np.int64)
    num_prototypes, num_classes = counts.shape
    clusters = cluster_prototypes(counts, prototype_vectors, seed)
    live = clusters >= 0
    num_clusters = int(clusters.max()) + 1 if live.any() else 0
    cluster_counts = np.zeros((num_clusters, num_classes), dtype=np.int64)  # (clusters, L)
    np.add.at(cluster_counts, clusters[live], counts[live])
    cluster_to_class = match_clusters(cluster_counts)
    mapping = np.full(num_prototypes, -1, dtype=np.int64)
    mapping[live] = cluster_to_class[clusters[live]]
    return scores_from_mapping(counts, mapping)


def cluster_prototypes(
    counts: np.ndarray, prototype_vectors: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Cluster id (K,) int64 in 0..min(live, L)-1 of each prototype, -1 for prototypes without
    labelled pixels (see hungarian_scores)."""
    num_prototypes, num_classes = counts.shape
    if prototype_vectors is None:
        features = counts.astype(np.float64)
    else:
        features = np.asarray(prototype_vectors, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] != num_prototypes:
            raise ValueError(
                f"prototype_vectors must be ({num_prototypes}, D), got {features.shape}"
            )
    pixels = counts.sum(axis=1)  # (K,)
    live = np.flatnonzero(pixels > 0)
    clusters = np.full(num_prototypes, -1, dtype=np.int64)
    if len(live) <= num_classes:
        clusters[live] = np.arange(len(live))
    else:
        clusters[live] = kmeans_cosine(features[live], num_classes, seed, weights=pixels[live])
    return clusters


def match_clusters(cluster_counts: np.ndarray) -> np.ndarray:
    """One-to-one cluster -> class matching maximising matched pixels.

    cluster_counts (clusters, L) int; returns (C',) int64 class per cluster, -1 for clusters left
    unmatched (only possible when C' > C).
    """
    rows, cols = linear_sum_assignment(cluster_counts, maximize=True)
    cluster_to_class = np.full(cluster_counts.shape[0], -1, dtype=np.int64)
    cluster_to_class[rows] = cols
    return cluster_to_class


def kmeans_cosine(
    vectors: np.ndarray,
    n_clusters: int,
    seed: int = 0,
    restarts: int = 10,
    iters: int = 100,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Spherical k-means: labels (N,) int64 in 0..n_clusters-1 for vectors (N, D).

    Rows are L2-normalised (all-zero rows stay zero); similarity is the cosine. Each restart
    starts from k-means++ seeds (distance 1 - cos) and the run with the lowest inertia
    (sum of 1 - cos to the assigned centre) wins. weights (N,) >= 0, optional: a point counts
    as that many points (seeding, centres and inertia). float32 input stays float32 (large
    pixel sets), anything else is float64. Deterministic for a given seed; labels are renumbered
    by first appearance so equal partitions give equal labels.
    """
    x = np.asarray(vectors)
    x = x if x.dtype == np.float32 else x.astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {x.shape}")
    if not 1 <= n_clusters <= len(x):
        raise ValueError(f"n_clusters must be in [1, {len(x)}], got {n_clusters}")
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and (w.shape != (len(x),) or (w < 0).any() or w.sum() <= 0):
        raise ValueError(f"weights must be ({len(x)},), >= 0 and not all zero")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)  # (N, D)
    rng = np.random.default_rng(seed)
    best_labels, best_inertia = None, np.inf
    for _ in range(restarts):
        labels, inertia = _kmeans_run(x, _kmeans_pp(x, n_clusters, rng, w), iters, w)
        if best_labels is None or inertia < best_inertia - 1e-9 * max(1.0, best_inertia):
            best_labels, best_inertia = labels, inertia  # ties keep the earlier restart
    return _renumber(best_labels)


def _kmeans_pp(
    x: np.ndarray, n_clusters: int, rng: np.random.Generator, w: np.ndarray | None
) -> np.ndarray:
    """k-means++ seeding on cosine distance (times the weights); centres (n_clusters, D)."""
    first = rng.integers(len(x)) if w is None else rng.choice(len(x), p=w / w.sum())
    chosen = [int(first)]
    dist = 1.0 - x @ x[chosen[0]]  # (N,)
    for _ in range(1, n_clusters):
        weights = np.clip(dist, 0.0, None) * (1.0 if w is None else w)
        weights[chosen] = 0.0
        if weights.sum() <= 0:  # duplicates only: pick any unchosen point
            weights = np.ones(len(x))
            weights[chosen] = 0.0
        chosen.append(int(rng.choice(len(x), p=weights / weights.sum())))
        dist = np.minimum(dist, 1.0 - x @ x[chosen[-1]])
    return x[chosen].copy()


def _kmeans_run(
    x: np.ndarray, centres: np.ndarray, iters: int, w: np.ndarray | None
) -> tuple[np.ndarray, float]:
    labels = np.full(len(x), -1, dtype=np.int64)
    for _ in range(iters):
        sims = x @ centres.T  # (N, n_clusters)
        new_labels = sims.argmax(axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        centres = _update_centres(x, labels, centres, sims, w)
    sims = x @ centres.T
    labels = sims.argmax(axis=1)
    distance = 1.0 - sims.max(axis=1).astype(np.float64)
    return labels, float(distance.sum() if w is None else (w * distance).sum())


def _update_centres(
    x: np.ndarray, labels: np.ndarray, centres: np.ndarray, sims: np.ndarray, w: np.ndarray | None
) -> np.ndarray:
    """Normalised (weighted) member sums; an empty cluster takes the point farthest from its
    centre."""
    members = np.zeros((len(centres), len(x)), dtype=x.dtype)  # (n_clusters, N), a matmul
    members[labels, np.arange(len(x))] = 1.0 if w is None else w  # beats np.add.at on big N
    sums = members @ x
    sizes = np.bincount(labels, minlength=len(centres))
    worst_fit = np.argsort(sims[np.arange(len(x)), labels], kind="stable")
    for slot, cluster in enumerate(np.flatnonzero(sizes == 0)):
        sums[cluster] = x[worst_fit[slot]]
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.where(norms > 0, norms, 1.0)


def _renumber(labels: np.ndarray) -> np.ndarray:
    _, first = np.unique(labels, return_index=True)
    order = labels[np.sort(first)]  # cluster ids by first appearance
    remap = np.empty(labels.max() + 1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return remap[labels]
