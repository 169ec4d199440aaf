"""COCO-Stuff-27 protocol: PiCIE's pixel-feature clustering on cases with known answers, the
views (PiCIE's 320 / 320 and the authors' 256 / 224), images read in stored orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from indexing.scores.cocostuff import COCOSTUFF_CATEGORIES
from indexing.scores.metrics import ConfusionAccumulator
from indexing.scores.picie import cluster_map, fit_centroids, picie_scores
from indexing.scores.protocol import cocostuff27
from indexing.store.views import (
    AUTHORS_VIEW,
    PICIE_VIEW,
    View,
    view_geometry,
    view_image,
    view_labels,
)
from model.checkpoint import load_encoder
from model.transforms import Preprocessed

STRIDE = 4
# pycocotools' mask decoding under numpy 2 (the indexing_data fixture)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _cell_classes(seed: int, h: int = 6, w: int = 6) -> np.ndarray:
    """(h, w) class of each cell; over three seeds every one of the 27 classes occurs."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return (i * 7 + j * 2 + 9 * seed) % 27


def test_picie_recovers_27_separable_classes_exactly() -> None:
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.standard_normal((32, 32)))[0][:27]  # (27, D) orthonormal
    images = []
    for seed in range(3):
        classes = _cell_classes(seed)  # (6, 6)
        features = directions[classes] * rng.uniform(0.5, 2, (6, 6, 1))  # norms do not matter
        features += 0.03 * rng.standard_normal(features.shape)
        labels = np.kron(classes, np.ones((STRIDE, STRIDE), dtype=np.int64))  # (24, 24)
        images.append((torch.from_numpy(features.transpose(2, 0, 1)).float(), labels))
    cells = np.concatenate([f.flatten(1).T.numpy() for f, _ in images])  # (108, 32)
    centroids = fit_centroids(cells, 27, seed=0)
    assert centroids.shape == (27, 32)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
    info = Preprocessed((24, 24), (24, 24), (6, 6))
    acc = ConfusionAccumulator(27, 27)
    for features, labels in images:
        acc.update(cluster_map(features, info, STRIDE, centroids), labels)
    scores = picie_scores(acc.counts)
    assert scores.miou == 1.0 and scores.pixel_accuracy == 1.0
    assert sorted(scores.mapping) == list(range(27))  # one cluster per class


def test_picie_scores_by_hand() -> None:
    counts = np.array([[0, 5, 0], [3, 1, 0], [0, 0, 2]])  # (cluster, class) pixels
    scores = picie_scores(counts)
    np.testing.assert_array_equal(scores.mapping, [1, 0, 2])
    # class 0: TP 3, FP 1 (cluster 1's class-1 pixel), FN 0; class 1: TP 5, FN 1; class 2: 1.
    np.testing.assert_allclose(scores.per_class_iou, [3 / 4, 5 / 6, 1.0])
    assert scores.pixel_accuracy == pytest.approx(10 / 11)


def test_fit_centroids_subsamples_deterministically() -> None:
    rng = np.random.default_rng(1)
    cells = rng.standard_normal((500, 8)).astype(np.float32)
    a = fit_centroids(cells, 4, seed=3, max_points=100)
    np.testing.assert_array_equal(a, fit_centroids(cells, 4, seed=3, max_points=100))
    assert a.shape == (4, 8) and a.dtype == np.float32


@pytest.mark.parametrize(
    "view, size, box",
    [
        (PICIE_VIEW, (640, 480), (53, 0, 373, 320)),  # 640 x 480 -> 426 x 320, centre 320
        (AUTHORS_VIEW, (640, 480), (58, 16, 282, 240)),  # -> 341 x 256 (torchvision), 224
        (AUTHORS_VIEW, (300, 451), (16, 80, 240, 304)),  # -> 256 x 384, portrait
    ],
)
def test_views_resize_the_shorter_side_and_crop_the_centre(view, size, box) -> None:
    W, H = size
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 27, (H, W)).astype(np.uint8)
    image = Image.fromarray(labels).convert("RGB")
    assert view_image(image, view).size == (view.crop, view.crop)
    resized = Image.fromarray(labels).resize(
        (round(W * view.resize / min(W, H) - 0.49), round(H * view.resize / min(W, H) - 0.49)),
        Image.Resampling.NEAREST,
    )
    np.testing.assert_array_equal(view_labels(labels, view), np.asarray(resized.crop(box)))
    geometry = view_geometry((W, H), view)  # the same crop, as a geometry
    assert geometry.resized_size == resized.size
    assert (*geometry.offset, geometry.offset[0] + view.crop, geometry.offset[1] + view.crop) == box


class _Index:
    """The two things the protocol reads of a ConceptIndex."""

    def __init__(self, root: Path, paths: list[str]):
        self.image_root = root
        self._paths = paths

    def images_table(self) -> pd.DataFrame:
        return pd.DataFrame({"path": self._paths})


def _stuff_value(name: str) -> int:
    """stuffthingmaps PNG value (category id - 1) of a COCO-Stuff class name."""
    return next(cid for cid, (n, _) in COCOSTUFF_CATEGORIES.items() if n == name) - 1


def test_protocol_reads_images_in_stored_orientation(indexing_data, tmp_path) -> None:
    """An image with an EXIF rotation and its labels in stored orientation: evaluated as
    stored (before: rotated, its size no longer matched the labels, so it was dropped)."""
    images, maps = tmp_path / "images", tmp_path / "stuffthingmaps"
    images.mkdir(), maps.mkdir()
    rng = np.random.default_rng(3)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated by 90 degrees
    stored = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)  # H 48, W 80 as stored
    Image.fromarray(stored).save(images / "000000000001.jpg", exif=exif)
    Image.fromarray(stored).save(images / "000000000002.jpg")  # no EXIF
    labels = np.full((48, 80), _stuff_value("sky-other"), dtype=np.uint8)
    labels[24:] = _stuff_value("grass")
    for name in ("000000000001", "000000000002"):
        Image.fromarray(labels).save(maps / f"{name}.png")
    encoder = load_encoder(indexing_data["checkpoint"], "cpu")
    index = _Index(images, ["000000000001.jpg", "000000000002.jpg"])
    curated = ["000000000001", "000000000002", "000000000003"]  # the last is not indexed
    for view in (PICIE_VIEW, View(64, 48)):
        run = cocostuff27(index, encoder, curated, stuffthing_dir=maps, view=view)
        assert run.evaluated == 2 and run.missing == 1
        assert run.prototype_counts.shape == (8, 27) and run.cluster_counts.shape[1] == 27
        # every labelled crop pixel counted once by each prediction, sky and grass only
        assert run.prototype_counts.sum() == run.cluster_counts.sum() == 2 * view.crop**2
        assert set(np.flatnonzero(run.prototype_counts.sum(axis=0))) == {22, 23}  # plant, sky
