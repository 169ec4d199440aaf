"""The authors' view (resize 256, centre crop 224) in extraction: the same input as their
viz_slots.py, maps placed back on the image, slots and labels counted inside the crop only."""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

from indexing.extract import Geometry, ImageFiles, image_slots, preprocess
from indexing.views import AUTHORS_VIEW
from model.encoder import Preprocessed, assign_pixels, counted_region

STRIDE = 32


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
    x, info = preprocess(Geometry(STRIDE, 448, AUTHORS_VIEW), image)
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


def test_labels_outside_the_crop_are_not_counted(tmp_path) -> None:
    _photo().save(tmp_path / "a.png")
    labels = np.full((480, 640), 3, dtype=np.uint8)
    files = ImageFiles(tmp_path, ["a.png"], Geometry(STRIDE, 448, AUTHORS_VIEW), lambda i: labels)
    item = files[0]
    x0, y0, x1, y1 = counted_region(item.info, STRIDE)
    assert (item.labels[y0:y1, x0:x1] == 3).all()
    assert (item.labels == 3).sum() == (x1 - x0) * (y1 - y0)  # 255 elsewhere
    whole = ImageFiles(tmp_path, ["a.png"], Geometry(STRIDE, 448), lambda i: labels)[0]
    assert (whole.labels == 3).all() and counted_region(whole.info, STRIDE) == (0, 0, 640, 480)
