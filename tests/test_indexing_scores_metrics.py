"""Evaluation: hand-made prototype maps whose scores are worked out by hand."""

import json

import numpy as np
import pytest

from indexing.scores.metrics import (
    ConfusionAccumulator,
    hungarian_scores,
    kmeans_cosine,
    majority_vote_scores,
    prototype_purity,
    scores_from_mapping,
    split_miou,
)

U = 255  # ignored label


def _counts(assignment: np.ndarray, labels: np.ndarray, k: int, c: int) -> np.ndarray:
    acc = ConfusionAccumulator(k, c)
    acc.update(np.asarray(assignment), np.asarray(labels))
    return acc.counts


def test_perfect_prediction() -> None:
    labels = np.random.default_rng(0).integers(0, 4, size=(16, 16))
    counts = _counts(labels, labels, 4, 4)
    for scores in (majority_vote_scores(counts), hungarian_scores(counts)):
        assert scores.miou == 1.0
        assert scores.pixel_accuracy == 1.0
        np.testing.assert_array_equal(scores.mapping, [0, 1, 2, 3])


def test_permuted_labelling() -> None:
    labels = np.random.default_rng(1).integers(0, 4, size=(16, 16))
    perm = np.array([2, 0, 3, 1])  # prototype of class c is perm[c]
    counts = _counts(perm[labels], labels, 4, 4)
    inverse = np.argsort(perm)  # class of prototype k
    for scores in (majority_vote_scores(counts), hungarian_scores(counts)):
        assert scores.miou == 1.0
        assert scores.pixel_accuracy == 1.0
        np.testing.assert_array_equal(scores.mapping, inverse)


def test_counts_and_ignore_pixel() -> None:
    assignment = np.array([[0, 1], [1, 1]])
    labels = np.array([[0, 1], [2, U]])  # the 255 pixel (assigned to 1) is never counted
    counts = _counts(assignment, labels, 2, 3)
    np.testing.assert_array_equal(counts, [[1, 0, 0], [0, 1, 1]])
    assert counts.dtype == np.int64


def test_updates_accumulate() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 5, size=(2, 8, 8)), rng.integers(0, 3, size=(2, 8, 8))
    acc = ConfusionAccumulator(5, 3)
    acc.update(a[0], b[0])
    acc.update(a[1], b[1])
    np.testing.assert_array_equal(acc.counts, _counts(a.reshape(16, 8), b.reshape(16, 8), 5, 3))
    assert acc.counts.sum() == 128


def test_update_rejects_bad_input() -> None:
    acc = ConfusionAccumulator(2, 2)
    with pytest.raises(ValueError, match="shape"):
        acc.update(np.zeros((4, 4), dtype=int), np.zeros((4, 5), dtype=int))
    with pytest.raises(ValueError, match="class index out of range"):
        acc.update(np.zeros((1, 2), dtype=int), np.array([[0, 2]]))
    with pytest.raises(ValueError, match="prototype index out of range"):
        acc.update(np.array([[0, 3]]), np.zeros((1, 2), dtype=int))


def test_known_3x3_example() -> None:
    labels = np.array([[0, 0, 1], [0, 1, 1], [2, 2, U]])
    assignment = np.array([[0, 0, 0], [1, 1, 1], [2, 1, 2]])
    counts = _counts(assignment, labels, 3, 3)
    # k0: (0,0) c0, (0,1) c0, (0,2) c1; k1: (1,0) c0, (1,1) c1, (1,2) c1, (2,1) c2; k2: (2,0) c2.
    np.testing.assert_array_equal(counts, [[2, 1, 0], [1, 2, 1], [0, 0, 1]])
    # Majority: k0 -> 0, k1 -> 1, k2 -> 2 (also the best one-to-one matching: 2 + 2 + 1 = 5).
    # c0: TP 2, FP 1 (k0's c1 pixel), FN 3 - 2 = 1 -> 2 / 4 = 0.5
    # c1: TP 2, FP 2 (k1's c0 and c2 pixels), FN 3 - 2 = 1 -> 2 / 5 = 0.4
    # c2: TP 1, FP 0, FN 2 - 1 = 1 -> 1 / 2 = 0.5
    # pixel accuracy: (2 + 2 + 1) / 8 labelled pixels
    for scores in (majority_vote_scores(counts), hungarian_scores(counts)):
        np.testing.assert_allclose(scores.per_class_iou, [0.5, 0.4, 0.5])
        assert scores.miou == pytest.approx(1.4 / 3)
        assert scores.pixel_accuracy == pytest.approx(5 / 8)


def test_hungarian_differs_from_majority() -> None:
    # k0 sees 3 pixels of c0; k1 sees 2 of c0 and 1 of c1.
    counts = np.array([[3, 0], [2, 1]])
    majority = majority_vote_scores(counts)
    # Both -> c0: c0 TP 5, FP 1, FN 0 -> 5/6; c1 TP 0, FP 0, FN 1 -> 0.
    np.testing.assert_array_equal(majority.mapping, [0, 0])
    np.testing.assert_allclose(majority.per_class_iou, [5 / 6, 0.0])
    assert majority.pixel_accuracy == pytest.approx(5 / 6)
    hungarian = hungarian_scores(counts)
    # One-to-one: k0 -> c0, k1 -> c1 (3 + 1 = 4 beats 0 + 2 = 2).
    # c0: TP 3, FP 0, FN 2 -> 3/5; c1: TP 1, FP 2, FN 0 -> 1/3.
    np.testing.assert_array_equal(hungarian.mapping, [0, 1])
    np.testing.assert_allclose(hungarian.per_class_iou, [3 / 5, 1 / 3])
    assert hungarian.miou == pytest.approx((3 / 5 + 1 / 3) / 2)
    assert hungarian.pixel_accuracy == pytest.approx(4 / 6)


def test_two_prototypes_merged_into_one_class() -> None:
    labels = np.array([[0, 0, 1, 1], [0, 0, 2, 2]])
    assignment = np.array([[0, 1, 2, 2], [1, 0, 3, 3]])  # class 0 split over k0 and k1
    counts = _counts(assignment, labels, 4, 3)
    majority = majority_vote_scores(counts)
    np.testing.assert_array_equal(majority.mapping, [0, 0, 1, 2])
    assert majority.miou == 1.0
    # K = 4 > C = 3: histogram rows of k0 and k1 are identical, so they share a cluster.
    hungarian = hungarian_scores(counts)
    np.testing.assert_array_equal(hungarian.mapping, [0, 0, 1, 2])
    assert hungarian.miou == 1.0


def test_prototype_split_over_two_classes() -> None:
    labels = np.array([[0, 0, 0, 1], [1, 1, 1, U]])
    assignment = np.array([[0, 0, 0, 0], [1, 1, 2, 2]])  # k0: 3 x c0 + 1 x c1
    dominant, purity = prototype_purity(_counts(assignment, labels, 4, 2))
    np.testing.assert_array_equal(dominant, [0, 1, 1, -1])  # k3 has no labelled pixel
    np.testing.assert_allclose(purity[:3], [0.75, 1.0, 1.0])
    assert np.isnan(purity[3])


def test_unmapped_prototype_is_false_negative() -> None:
    counts = np.array([[2, 0], [1, 1]])
    scores = scores_from_mapping(counts, np.array([0, -1]))
    # c0: TP 2, FP 0, FN 3 - 2 = 1 -> 2/3; c1: TP 0, FP 0, FN 1 -> 0; accuracy 2/4.
    np.testing.assert_allclose(scores.per_class_iou, [2 / 3, 0.0])
    assert scores.pixel_accuracy == pytest.approx(0.5)


def test_absent_class_is_nan_and_skipped() -> None:
    counts = np.array([[4, 0, 0], [0, 2, 0], [0, 0, 0]])  # class 2 never seen, k2 empty
    scores = majority_vote_scores(counts)
    np.testing.assert_array_equal(scores.mapping, [0, 1, -1])
    assert np.isnan(scores.per_class_iou[2])
    assert scores.miou == 1.0
    out = scores.to_dict(["a", "b", "c"], class_is_thing=[True, False, False])
    assert out["per_class_iou"] == {"a": 1.0, "b": 1.0, "c": None}
    assert out["mapping"] == [0, 1, -1]
    assert out["things_miou"] == 1.0 and out["stuff_miou"] == 1.0
    json.dumps(out)  # plain Python types only


def test_split_miou() -> None:
    iou = np.array([0.2, 0.4, np.nan, 0.6])
    things, stuff = split_miou(iou, [True, True, False, False])
    assert things == pytest.approx(0.3)
    assert stuff == pytest.approx(0.6)
    things, stuff = split_miou(iou, [True, True, False, True])  # the only stuff class is nan
    assert things == pytest.approx(0.4)
    assert np.isnan(stuff)


def test_clustering_uses_prototype_vectors() -> None:
    # K = 6 prototypes, C = 3 classes. Vectors form three obvious pairs around the axes:
    # {0, 1}, {2, 3}, {4, 5}; each pair's pixels are of class (2, 0, 1) respectively.
    rng = np.random.default_rng(3)
    axes = np.eye(8)[[0, 0, 1, 1, 2, 2]]
    vectors = 5 * axes + 0.1 * rng.standard_normal((6, 8))
    counts = np.zeros((6, 3), dtype=np.int64)
    for k, c in enumerate([2, 2, 0, 0, 1, 1]):
        counts[k, c] = 10 + k
    scores = hungarian_scores(counts, vectors)
    np.testing.assert_array_equal(scores.mapping, [2, 2, 0, 0, 1, 1])
    assert scores.miou == 1.0
    # Prototype 5 now sees class 0 pixels only, but its vector still sits with prototype 4:
    # the vectors, not the labels, decide its cluster, so it keeps predicting class 1.
    counts[5] = [11, 0, 0]
    np.testing.assert_array_equal(hungarian_scores(counts, vectors).mapping, [2, 2, 0, 0, 1, 1])
    # Without vectors the histogram rows decide, and prototype 5 joins class 0's cluster.
    assert hungarian_scores(counts).mapping[5] == 0


def test_hungarian_rejects_wrong_vector_count() -> None:
    with pytest.raises(ValueError, match="prototype_vectors"):
        hungarian_scores(np.ones((4, 2), dtype=np.int64), np.ones((3, 5)))


def test_kmeans_cosine_recovers_clusters_deterministically() -> None:
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((4, 16))
    truth = np.repeat(np.arange(4), 10)
    rng.shuffle(truth)
    # Scale does not matter to cosine k-means: the points have random norms.
    x = (centres[truth] + 0.05 * rng.standard_normal((40, 16))) * rng.uniform(0.5, 5, (40, 1))
    labels = kmeans_cosine(x, 4, seed=0)
    np.testing.assert_array_equal(labels, kmeans_cosine(x, 4, seed=0))
    assert labels.shape == (40,) and labels.min() == 0 and labels.max() == 3
    # Same partition as the truth: a one-to-one correspondence between label sets.
    pairs = set(zip(labels.tolist(), truth.tolist()))
    assert len(pairs) == 4
    # Labels are numbered by first appearance, so another seed gives identical output.
    np.testing.assert_array_equal(labels, kmeans_cosine(x, 4, seed=123))
    assert labels[0] == 0


def test_kmeans_cosine_rejects_too_many_clusters() -> None:
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_cosine(np.ones((3, 2)), 4)


def _unit(degrees: float) -> np.ndarray:
    return np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))])


def test_dead_prototypes_take_no_cluster() -> None:
    # Two busy prototypes (classes 0 and 1, 40 degrees apart) and a dead one far away. Unweighted
    # 2-means would give the dead one a cluster of its own and merge the busy ones.
    vectors = np.stack([_unit(0), _unit(40), _unit(180)])
    counts = np.array([[100, 0], [0, 100], [0, 0]])
    scores = hungarian_scores(counts, vectors)
    np.testing.assert_array_equal(scores.mapping, [0, 1, -1])
    assert scores.miou == 1.0 and scores.pixel_accuracy == 1.0


def test_prototypes_weigh_as_much_as_their_pixels() -> None:
    # A rare live prototype far from both busy ones: weighted by one pixel it joins the nearer
    # busy cluster instead of forcing the two busy prototypes together.
    vectors = np.stack([_unit(0), _unit(40), _unit(-120)])
    counts = np.array([[1000, 0], [0, 1000], [1, 0]])
    scores = hungarian_scores(counts, vectors)
    np.testing.assert_array_equal(scores.mapping, [0, 1, 0])
    assert scores.miou == 1.0 and scores.pixel_accuracy == 1.0


def test_weighted_kmeans_equals_repeated_points() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((12, 5))
    w = rng.integers(1, 4, 12)
    weighted = kmeans_cosine(x, 3, seed=0, weights=w)
    repeated = kmeans_cosine(np.repeat(x, w, axis=0), 3, seed=0)
    first = np.concatenate([[0], np.cumsum(w)[:-1]])  # each point's first copy
    assert len(set(zip(weighted.tolist(), repeated[first].tolist()))) == 3  # same partition
    assert kmeans_cosine(x.astype(np.float32), 3).dtype == np.int64
    with pytest.raises(ValueError, match="weights"):
        kmeans_cosine(x, 3, weights=np.zeros(12))
