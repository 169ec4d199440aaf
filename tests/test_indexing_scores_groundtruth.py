"""Ground truth: hand-made COCO JSONs rasterised pixel-exactly, COCO-Stuff tables, label PNGs."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from indexing.scores.cocostuff import (
    COCOSTUFF27_CLASSES,
    COCOSTUFF27_IS_THING,
    COCOSTUFF_CATEGORIES,
    FINE_TO_COARSE27,
)
from indexing.scores.groundtruth import CocoLabels, ImageInfo, read_stuffthing_png

U = 255  # unlabelled


def _poly(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    """Rectangle polygon in pixel-edge coordinates: covers columns x0..x1-1, rows y0..y1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _write(path: Path, images: list, categories: list, annotations: list) -> Path:
    for i, ann in enumerate(annotations, start=1):
        ann.setdefault("id", i)
        ann.setdefault("iscrowd", 0)
    data = {"images": images, "categories": categories, "annotations": annotations}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def coco_files(tmp_path: Path) -> tuple[Path, Path]:
    """Image 1 is 4 x 6 (H x W), image 2 is 3 x 3; things person (1) and dog (18); stuff grass
    (124), sky-other (157) and "other" (183)."""
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 6, "height": 4},
        {"id": 2, "file_name": "b.jpg", "width": 3, "height": 3},
    ]
    centre_column = np.zeros((3, 3), dtype=np.uint8, order="F")
    centre_column[:, 1] = 1
    dog_rle = mask_utils.encode(np.asfortranarray(centre_column))
    dog_rle["counts"] = dog_rle["counts"].decode("ascii")  # compressed RLE, as in COCO JSONs
    things = [
        # The dog (1 pixel, row 1 col 2) is listed first but is smaller than the person, so wins.
        {"image_id": 1, "category_id": 18, "segmentation": _poly(2, 1, 3, 2)},
        {"image_id": 1, "category_id": 1, "segmentation": _poly(1, 0, 4, 3)},  # rows 0-2, cols 1-3
        {"image_id": 2, "category_id": 18, "segmentation": dog_rle},
    ]
    stuff = [
        {"image_id": 1, "category_id": 157, "segmentation": _poly(0, 0, 6, 2)},  # rows 0-1
        # Column-major uncompressed RLE: per column 2 zeros then 2 ones (rows 2-3), except the
        # last column where row 3 stays unlabelled: 5 * (2 + 2) + 2 + 1 + 1 = 24 = 4 * 6 pixels.
        {
            "image_id": 1,
            "category_id": 124,
            "segmentation": {"counts": [2, 2] * 5 + [2, 1, 1], "size": [4, 6]},
        },
        # "other" is unlabelled: it must not overwrite the sky below it.
        {"image_id": 1, "category_id": 183, "segmentation": _poly(4, 0, 6, 1)},
    ]
    thing_cats = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 18, "name": "dog", "supercategory": "animal"},
    ]
    stuff_cats = [
        {"id": 124, "name": "grass", "supercategory": "plant"},
        {"id": 157, "name": "sky-other", "supercategory": "sky"},
        {"id": 183, "name": "other", "supercategory": "other"},
    ]
    instances = _write(tmp_path / "instances.json", images, thing_cats, things)
    stuff_path = _write(tmp_path / "stuff.json", images, stuff_cats, stuff)
    return instances, stuff_path


def test_fine_label_map_is_pixel_exact(coco_files: tuple[Path, Path]) -> None:
    labels = CocoLabels(*coco_files)
    assert labels.class_names == ["person", "dog", "grass", "sky-other"]  # id order
    assert labels.class_is_thing == [True, True, False, False]
    p, d, g, s = 0, 1, 2, 3
    expected = np.array(
        [
            [s, p, p, p, s, s],
            [s, p, d, p, s, s],
            [g, p, p, p, g, g],
            [g, g, g, g, g, U],
        ]
    )
    got = labels.label_map(1)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(labels.label_map(2), [[U, d, U]] * 3)


def test_coarse_label_map(coco_files: tuple[Path, Path]) -> None:
    labels = CocoLabels(*coco_files, coarse=True)
    assert labels.class_names == list(COCOSTUFF27_CLASSES)
    assert labels.num_classes == 27
    idx = COCOSTUFF27_CLASSES.index
    p, d, g, s = idx("person"), idx("animal"), idx("plant"), idx("sky")
    expected = np.array(
        [
            [s, p, p, p, s, s],
            [s, p, d, p, s, s],
            [g, p, p, p, g, g],
            [g, g, g, g, g, U],
        ]
    )
    np.testing.assert_array_equal(labels.label_map(1), expected)


def test_image_ids_and_info(coco_files: tuple[Path, Path]) -> None:
    labels = CocoLabels(coco_files[0])
    assert labels.image_ids == [1, 2]
    assert labels.image_info(1) == ImageInfo("a.jpg", 6, 4)
    assert labels.label_map(1).shape == (4, 6)
    with pytest.raises(KeyError):
        labels.image_info(99)


def test_things_only_leaves_stuff_unlabelled(coco_files: tuple[Path, Path]) -> None:
    labels = CocoLabels(coco_files[0])
    got = labels.label_map(1)
    assert labels.class_names == ["person", "dog"]
    assert (got == U).sum() == 4 * 6 - 9  # only the 3 x 3 person box (with the dog) is labelled
    assert got[1, 2] == 1


def test_single_json_with_isthing_flags(tmp_path: Path) -> None:
    """The synthetic scenes' layout: one JSON, `isthing` flags, RLE covering every pixel."""
    floor = np.ones((2, 3), dtype=np.uint8)
    disc = np.zeros((2, 3), dtype=np.uint8)
    disc[0, 0] = 1

    def rle(mask: np.ndarray) -> dict:
        encoded = mask_utils.encode(np.asfortranarray(mask))
        return {"counts": encoded["counts"].decode("ascii"), "size": list(mask.shape)}

    path = _write(
        tmp_path / "scenes.json",
        [{"id": 7, "file_name": "s.png", "width": 3, "height": 2}],
        [
            {"id": 1, "name": "disc", "supercategory": "shape", "isthing": 1},
            {"id": 200, "name": "floor", "supercategory": "ground", "isthing": 0},
        ],
        [  # the thing comes first in the file; the stuff under it must not cover it
            {"image_id": 7, "category_id": 1, "segmentation": rle(disc)},
            {"image_id": 7, "category_id": 200, "segmentation": rle(floor)},
        ],
    )
    labels = CocoLabels(path)
    assert labels.class_is_thing == [True, False]
    np.testing.assert_array_equal(labels.label_map(7), [[0, 1, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match="not a COCO-Stuff id"):
        CocoLabels(path, coarse=True)


def test_coarse_table_known_ids() -> None:
    name = {cid: COCOSTUFF27_CLASSES[c] for cid, c in FINE_TO_COARSE27.items()}
    assert name[1] == "person"
    assert name[157] == "sky"  # sky-other
    assert name[106] == "sky"  # clouds
    assert name[18] == "animal"  # dog
    assert name[52] == "food"  # banana: the thing supercategory
    assert name[121] == "food-stuff"  # food-other: the stuff one
    assert name[62] == "furniture" and name[98] == "furniture-stuff"  # chair, cabinet
    assert name[100] == "rawmaterial"  # cardboard
    assert name[182] == "solid"  # wood
    assert COCOSTUFF_CATEGORIES[157] == ("sky-other", "sky")


def test_coarse_table_shape() -> None:
    assert len(COCOSTUFF_CATEGORIES) == 80 + 91
    assert set(range(92, 183)) <= set(FINE_TO_COARSE27)
    assert not {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91, 183} & set(FINE_TO_COARSE27)
    assert len(set(COCOSTUFF27_CLASSES)) == 27
    # Every coarse class is used, things (ids <= 90) only by the 12 thing classes.
    assert set(FINE_TO_COARSE27.values()) == set(range(27))
    for cid, coarse in FINE_TO_COARSE27.items():
        assert COCOSTUFF27_IS_THING[coarse] == (cid <= 90), cid


def test_read_stuffthing_png(tmp_path: Path) -> None:
    # PNG value = category id - 1: person (1), sky-other (157), unlabelled, unused id 12,
    # food-other (121).
    values = np.array([[0, 156, 255], [11, 120, 0]], dtype=np.uint8)
    path = tmp_path / "000000000001.png"
    Image.fromarray(values, mode="L").save(path)
    idx = COCOSTUFF27_CLASSES.index
    coarse = read_stuffthing_png(path)
    np.testing.assert_array_equal(
        coarse, [[idx("person"), idx("sky"), U], [U, idx("food-stuff"), idx("person")]]
    )
    assert coarse.dtype == np.uint8
    np.testing.assert_array_equal(
        read_stuffthing_png(path, coarse=False), [[0, 156, U], [U, 120, 0]]
    )


def test_read_stuffthing_png_rejects_colour(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.new("RGB", (2, 2)).save(path)
    with pytest.raises(ValueError, match="8-bit"):
        read_stuffthing_png(path)
