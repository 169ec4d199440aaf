"""The authors' view (resize 256, centre crop 224) in extraction: the same input as their
viz_slots.py, maps placed back on the image, slots and labels counted inside the crop only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from indexing import ConceptIndex, build_index
from indexing.build.extract import ImageFiles
from indexing.scores.evaluate import index_confusion
from indexing.scores.groundtruth import CocoLabels
from indexing.store.rows import Geometry, cell_scores, image_slots, preprocess
from indexing.store.views import AUTHORS_VIEW, crop_region
from model.transforms import ImageTransform, Preprocessed, assign_pixels, counted_region

STRIDE = 32
# pycocotools' mask decoding under numpy 2 (the indexing_data fixture)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _photo(W: int = 640, H: int = 480) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)).resize(
        (W, H), Image.Resampling.BICUBIC
    )


def test_the_input_is_the_authors_transform() -> None:
    image = _photo()
    authors = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    x, info = preprocess(Geometry(ImageTransform(STRIDE, 448), AUTHORS_VIEW), image)
    torch.testing.assert_close(x[0], authors(image), rtol=0, atol=1e-6)
    # 640 x 480 -> 341 x 256, crop from (58, 16); 7 x 7 cells of 32 px
    assert info == Preprocessed((640, 480), (341, 256), (7, 7), (58, 16))
    # in image pixels: x from 58 * 640/341 - 0.5 to (58 + 224) * 640/341 - 0.5, y alike
    assert counted_region(info, STRIDE) == (109, 30, 529, 450)


def test_maps_follow_the_crop_and_count_only_its_pixels() -> None:
    info = Preprocessed((640, 480), (341, 256), (7, 7), (58, 16))
    K = 7
    dots = torch.zeros(K, 7, 7)
    for k in range(K):
        dots[k, :, k] = 1.0  # prototype k wins the k-th column of cells
    assignment, pixels, score = assign_pixels(dots, info, STRIDE)
    assert assignment.shape == (480, 640)
    x0, y0, x1, y1 = counted_region(info, STRIDE)
    # inside: the cell column under each pixel centre; outside: the border columns repeat
    crop_x = (np.arange(640) + 0.5) * 341 / 640 - 58
    expected = np.clip(np.floor(crop_x / STRIDE), 0, K - 1).astype(np.int16)
    np.testing.assert_array_equal(assignment[240], expected)
    assert pixels.sum() == (x1 - x0) * (y1 - y0)  # the crop's pixels, not the image's
    np.testing.assert_array_equal(pixels, np.bincount(assignment[y0:y1, x0:x1].ravel(), None, K))
    result = image_slots(dots, torch.randn(K, 4), info, STRIDE)
    assert abs(result.area.sum() - 1) < 1e-6
    boxes = result.bbox
    assert (boxes[:, 0] >= x0).all() and (boxes[:, 0] + boxes[:, 2] <= x1).all()
    assert (boxes[:, 1] == y0).all() and (boxes[:, 3] == y1 - y0).all()


def test_the_authors_ranking_score_by_hand() -> None:
    dots = torch.tensor([[[0.9, 0.2, 0.5]], [[0.1, 0.6, 0.0]], [[0.3, 0.3, 0.4]]])  # (3, 1, 3)
    info = Preprocessed((96, 32), (96, 32), (2, 1))  # the third cell is padding
    e = 1e-6  # cell 0 -> prototype 0, cell 1 -> prototype 1; prototype 2 wins none
    expected = [
        (0.9 * (1 + e) + 0.2 * e) / (1 + 2 * e),
        (0.1 * e + 0.6 * (1 + e)) / (1 + 2 * e),
        (0.3 * e + 0.3 * e) / (2 * e),
    ]
    np.testing.assert_allclose(cell_scores(dots, info), expected, rtol=1e-6)
    slots = image_slots(dots, torch.randn(3, 4), info, 32, cell_score=True)
    assert list(slots.prototype) == [0, 1]
    np.testing.assert_allclose(slots.score, expected[:2], rtol=1e-6)


def test_labels_outside_the_crop_are_not_counted(tmp_path) -> None:
    _photo().save(tmp_path / "a.png")
    labels = np.full((480, 640), 3, dtype=np.uint8)
    files = ImageFiles(
        tmp_path, ["a.png"], Geometry(ImageTransform(STRIDE, 448), AUTHORS_VIEW), lambda i: labels
    )
    item = files[0]
    x0, y0, x1, y1 = counted_region(item.info, STRIDE)
    assert (item.labels[y0:y1, x0:x1] == 3).all()
    assert (item.labels == 3).sum() == (x1 - x0) * (y1 - y0)  # 255 elsewhere
    whole = ImageFiles(
        tmp_path, ["a.png"], Geometry(ImageTransform(STRIDE, 448)), lambda i: labels
    )[0]
    assert (whole.labels == 3).all() and counted_region(whole.info, STRIDE) == (0, 0, 640, 480)


def test_build_with_the_authors_crop(indexing_data, tmp_path) -> None:
    """The scenes (64 px) indexed through the authors' view: manifest, slots inside the crop,
    and `indexing evaluate` on the stored maps agrees with the build's own evaluation."""
    config = dataclasses.replace(
        indexing_data["config"], out=tmp_path / "index", authors_crop=True, precision="bf16"
    )
    build_index(config)
    index = ConceptIndex.open(config.out)
    assert index.manifest["build"]["view"] == {"resize": 256, "crop": 224}
    assert index.manifest["build"]["precision"] == "bf16"
    images = index.images_table()
    stride = index.manifest["model"]["stride"]
    for image_id, W, H in zip(images["image_id"], images["width"], images["height"]):
        record = index.image(int(image_id))
        assert record.assignment.shape == (H, W)
        x0, y0, x1, y1 = crop_region((W, H), AUTHORS_VIEW, stride)
        inside = record.assignment[y0:y1, x0:x1]
        counts = np.bincount(inside.ravel(), minlength=index.num_prototypes)
        assert list(record.slots["prototype"]) == list(np.flatnonzero(counts))
        np.testing.assert_allclose(record.slots["area"], counts[counts > 0] / inside.size, 1e-6)
    labels = CocoLabels(indexing_data["annotations"])
    counts, evaluated, _ = index_confusion(index, labels)
    assert evaluated == 32
    np.testing.assert_array_equal(counts, index.confusion())
    with pytest.raises(ValueError, match="precision"):
        dataclasses.replace(config, precision="fp16")
