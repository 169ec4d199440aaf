"""Exports: COCO-style JSON with RLE masks (decoded back with pycocotools) and CSV tables."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as mask_utils

from explorer.cache import prune_oldest
from explorer.export import (
    ExportSegment,
    coco_document,
    concept_table_csv,
    decode_rle,
    encode_rle,
    write_coco_json,
)

# pycocotools' mask decoding under numpy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _segment(i: int, rng) -> ExportSegment:
    mask = np.zeros((30 + i, 40), bool)
    mask[rng.integers(0, 10) : 20, rng.integers(0, 10) : 35] = True
    return ExportSegment(
        slot_id=100 + i,
        image_id=i,
        file_name=f"{i:012d}.jpg",
        width=40,
        height=30 + i,
        mask=mask,
        score=0.5 + i / 10,
        bbox=[1, 2, 3, 4],
    )


def test_rle_round_trip():
    mask = np.random.default_rng(1).random((17, 23)) > 0.5
    rle = encode_rle(mask)
    assert rle["size"] == [17, 23] and isinstance(rle["counts"], str)
    json.dumps(rle)
    assert np.array_equal(decode_rle(rle), mask)


def test_coco_document_decodes_back_to_the_masks(tmp_path):
    rng = np.random.default_rng(0)
    items = [_segment(i, rng) for i in range(1, 4)]
    path = write_coco_json(coco_document(5, "sky", items), tmp_path / "out.json")
    document = json.loads(path.read_text())
    assert document["categories"] == [{"id": 5, "name": "sky"}]
    assert [im["id"] for im in document["images"]] == [1, 2, 3]
    assert document["images"][1] == {
        "id": 2,
        "file_name": "000000000002.jpg",
        "width": 40,
        "height": 32,
    }
    for annotation, item in zip(document["annotations"], items):
        assert annotation["image_id"] == item.image_id and annotation["category_id"] == 5
        rle = dict(annotation["segmentation"])
        rle["counts"] = rle["counts"].encode()
        decoded = mask_utils.decode(rle).astype(bool)
        assert np.array_equal(decoded, item.mask)
        assert annotation["area"] == int(item.mask.sum()) == int(mask_utils.area(rle))
        assert annotation["bbox"] == [1.0, 2.0, 3.0, 4.0]
        assert annotation["score"] == pytest.approx(item.score)
        assert annotation["iscrowd"] == 0 and annotation["slot_id"] == item.slot_id
    assert len({a["id"] for a in document["annotations"]}) == 3


def test_unnamed_prototype_gets_a_category_name():
    assert coco_document(2, "", [])["categories"] == [{"id": 2, "name": "prototype 2"}]


def test_csv_round_trip_and_atomic_write(tmp_path):
    table = pd.DataFrame({"prototype": [0, 1], "name": ["sky, blue", "é"], "images": [3, 0]})
    path = concept_table_csv(table, tmp_path / "sub" / "t.csv")
    assert pd.read_csv(path, keep_default_na=False).equals(table)
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]


def _fill(folder, count: int) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        path.write_bytes(b"x")
        os.utime(path, ns=(i * 10**9, i * 10**9))  # 0.png is the oldest
        paths.append(path)
    return paths


def test_prune_keeps_the_newest_files_and_spares_the_callers(tmp_path):
    paths = _fill(tmp_path / "cache", 6)
    prune_oldest(tmp_path / "cache", keep=3, spare=paths[0])
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["0.png", "4.png", "5.png"]


def test_prune_tolerates_files_deleted_by_another_request(tmp_path, monkeypatch):
    """Two requests prune at once: files listed by one vanish (pruned by the other) before it
    reads their times or deletes them."""
    folder = tmp_path / "cache"
    paths = _fill(folder, 8)
    listing = os.scandir

    def racing_scandir(path):
        entries = list(listing(path))
        for victim in paths[::2]:  # the other request prunes these right after our listing
            victim.unlink(missing_ok=True)
        return iter(entries)

    monkeypatch.setattr("explorer.cache.os.scandir", racing_scandir)
    prune_oldest(folder, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["5.png", "7.png"]
    prune_oldest(tmp_path / "absent", keep=2)  # a folder that was never created


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(tmp_path):
    """OWASP CSV injection: a text cell starting with = + - @ tab CR (or NUL) gets a leading
    single quote; numbers and other text are written as they are."""
    names = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "sky", "a=b", ""]
    table = pd.DataFrame(
        {"prototype": range(len(names)), "name": names, "score": [-0.5] * len(names)}
    )
    path = concept_table_csv(table, tmp_path / "t.csv")
    back = pd.read_csv(path, keep_default_na=False)
    assert list(back["name"]) == ["'" + n for n in names[:6]] + ["sky", "a=b", ""]
    assert list(back["score"]) == [-0.5] * len(names)
    assert list(table["name"]) == names  # the caller's table is not changed
