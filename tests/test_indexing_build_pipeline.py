"""Index build: tables against the stored maps and a direct encoder run, interrupted and
resumed builds, replacing an index, unreadable images, image ids."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from indexing import ConceptIndex
from indexing.build.pipeline import build_index
from indexing.store.directory import partial_dir
from indexing.store.rows import bounding_boxes
from model.checkpoint import load_encoder
from model.data import load_rgb

# pycocotools' mask decoding under numpy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


class Interrupt(Exception):
    pass


def _tables(index: Path) -> dict:
    """Everything a build writes that must not depend on how it was run."""
    store = faiss.read_index(str(index / "slots.faiss"))
    opened = ConceptIndex.open(index)
    return {
        "images": pd.read_feather(index / "images.arrow"),
        "slots": pd.read_feather(index / "slots.arrow"),
        "prototypes": pd.read_parquet(index / "prototypes.parquet"),
        "vectors": np.stack([store.reconstruct(i) for i in range(store.ntotal)]),
        "maps": {i: opened.assignment(i) for i in opened.image_ids()},
        "evaluation": json.loads((index / "evaluation.json").read_text()),
    }


def _assert_same_index(a: dict, b: dict, atol: float = 0.0) -> None:
    pd.testing.assert_frame_equal(a["images"], b["images"])
    exact = ["slot_id", "image_id", "prototype", "bbox_x", "bbox_y", "bbox_w", "bbox_h"]
    pd.testing.assert_frame_equal(a["slots"][exact], b["slots"][exact])
    for column in ("area", "score"):
        np.testing.assert_allclose(a["slots"][column], b["slots"][column], rtol=0, atol=atol)
    np.testing.assert_allclose(a["vectors"], b["vectors"], rtol=0, atol=max(atol, 1e-7))
    assert a["maps"].keys() == b["maps"].keys()
    for name, assignment in a["maps"].items():
        np.testing.assert_array_equal(assignment, b["maps"][name])
    for column in ("images", "slots", "dominant_class"):
        pd.testing.assert_series_equal(a["prototypes"][column], b["prototypes"][column])


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_manifest_and_tables(indexing_data) -> None:
    index = indexing_data["index"]
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["counts"] == {"images": 32, "slots": manifest["counts"]["slots"], "skipped": 0}
    assert manifest["model"]["num_prototypes"] == 8 and manifest["model"]["dim"] == 16
    assert manifest["model"]["input_size"] == 64 and manifest["model"]["stride"] == 16
    assert manifest["image_root"] == str(indexing_data["images"].absolute())
    sha = hashlib.sha256(indexing_data["checkpoint"].read_bytes()).hexdigest()
    assert manifest["checkpoint"]["sha256"] == sha
    assert set(manifest["versions"]) >= {"torch", "faiss", "numpy", "pandas"}
    images = pd.read_feather(index / "images.arrow")
    coco = json.loads(indexing_data["annotations"].read_text())
    by_name = {im["file_name"]: im["id"] for im in coco["images"]}
    assert list(images.columns) == [
        "image_id", "path", "width", "height", "slot_start", "slot_count",
        "map_shard", "map_offset", "map_length",
    ]  # fmt: skip
    assert list(images["image_id"]) == [by_name[p] for p in images["path"]]  # ids from the JSON
    assert list(images["path"]) == sorted(by_name)
    slots = pd.read_feather(index / "slots.arrow")
    assert list(slots.columns) == [
        "slot_id", "image_id", "prototype", "area", "score", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
    ]  # fmt: skip
    assert len(slots) == manifest["counts"]["slots"]
    assert list(slots["slot_id"]) == list(range(len(slots)))
    vectors = _tables(index)["vectors"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert [p.name for p in (index / "assignments").iterdir()] == ["00000.bin"]  # one shard
    opened = ConceptIndex.open(index)
    for image_id, group in slots.groupby("image_id"):
        row = images.set_index("image_id").loc[image_id]
        assert (row["slot_start"], row["slot_count"]) == (group.index[0], len(group))
        assignment = opened.assignment(image_id)
        assert assignment.shape == (64, 64)
        present = np.flatnonzero(np.bincount(assignment.ravel(), minlength=8))
        assert list(group["prototype"]) == list(present)
        pixels = np.bincount(assignment.ravel(), minlength=8)[present]
        np.testing.assert_allclose(group["area"], pixels / assignment.size, rtol=1e-6)
        boxes = bounding_boxes(assignment, 8)[present]
        np.testing.assert_array_equal(group[["bbox_x", "bbox_y", "bbox_w", "bbox_h"]], boxes)
    prototypes = pd.read_parquet(index / "prototypes.parquet")
    counts = slots.groupby("prototype").size().reindex(range(8), fill_value=0)
    assert list(prototypes["slots"]) == list(counts)
    for k, top in zip(prototypes["prototype"], prototypes["top_slot_ids"]):
        scores = slots.set_index("slot_id").loc[list(top), "score"].to_numpy()
        assert len(top) == counts[k] and np.all(np.diff(scores) <= 0)


def test_bounding_boxes_by_hand() -> None:
    assignment = np.zeros((5, 6), dtype=np.int16)
    assignment[1:3, 2:5] = 2  # rows 1-2, columns 2-4
    assignment[4, 0] = 1
    boxes = bounding_boxes(assignment, 4)
    np.testing.assert_array_equal(boxes, [[0, 0, 6, 5], [0, 4, 1, 1], [2, 1, 3, 2], [0, 0, 0, 0]])


def test_top_segments_agree_with_the_encoder(indexing_data) -> None:
    """Rank the images of each prototype by the mean dots over its pixels, one image at a time."""
    encoder = load_encoder(indexing_data["checkpoint"], "cpu")
    index = ConceptIndex.open(indexing_data["index"])
    scores = {}  # prototype -> {image_id: score}
    for image_id in index.image_ids():
        grouping = encoder.group(load_rgb(index.image(image_id).path), size=64)
        for k in np.flatnonzero(grouping.pixels > 0):
            scores.setdefault(int(k), {})[image_id] = float(grouping.score[k])
    assert len(scores) == 8
    for k, by_image in scores.items():
        expected = sorted(by_image.items(), key=lambda item: -item[1])[:5]
        top = index.top_segments(k, 5)
        assert list(top["image_id"]) == [image_id for image_id, _ in expected]
        np.testing.assert_allclose(top["score"], [s for _, s in expected], atol=1e-5)


def test_interrupted_rebuild_keeps_the_old_index_and_resumes(indexing_data, tmp_path) -> None:
    config = indexing_data["config"]
    out = tmp_path / "index"
    shutil.copytree(config.out, out)
    (out / "manifest.json").write_text(
        (out / "manifest.json").read_text().replace('"seconds"', '"seconds_marker_old"')
    )
    before = _hashes(out)
    done: list[int] = []

    def stop_after_first(chunk: int) -> None:
        done.append(chunk)
        raise Interrupt

    with pytest.raises(Interrupt):
        build_index(dataclasses.replace(config, out=out), on_chunk=stop_after_first)
    assert done == [0]
    assert _hashes(out) == before  # the old index is untouched until the new one is complete
    assert (partial_dir(out) / "chunks").is_dir()
    other = dataclasses.replace(config, out=out, resume=True, chunk_size=4)
    with pytest.raises(ValueError, match="chunk_size"):
        build_index(other)  # different settings: no mixing of two builds
    resumed: list[int] = []
    build_index(dataclasses.replace(config, out=out, resume=True), on_chunk=resumed.append)
    assert resumed == [1, 2, 3]  # chunk 0 was not extracted again
    assert not partial_dir(out).exists()
    assert "seconds_marker_old" not in (out / "manifest.json").read_text()
    _assert_same_index(_tables(out), _tables(config.out))


def test_unreadable_images_are_skipped_and_reported(indexing_data, tmp_path) -> None:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    sources = sorted(indexing_data["images"].glob("*.jpg"))[:4]
    for source in sources[:3]:
        shutil.copy(source, folder / source.name)
    data = sources[3].read_bytes()
    (folder / "broken.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (folder / "notes.jpg").write_text("not an image at all\n")
    Image.open(sources[0]).convert("CMYK").save(folder / "sub" / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80 x 40, upright 40 x 80
    Image.new("RGB", (80, 40), (200, 10, 10)).save(folder / "sub" / "turned.jpg", exif=exif)
    out = folder / "index"  # inside the image folder: its PNGs must not become images
    config = dataclasses.replace(
        indexing_data["config"], images=folder, out=out, annotations=(), workers=2
    )
    build_index(config)
    build_index(config)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["images"] == 5 and manifest["counts"]["skipped"] == 2
    assert [s["path"] for s in manifest["skipped"]] == ["broken.jpg", "notes.jpg"]
    assert all(s["reason"] for s in manifest["skipped"])
    images = pd.read_feather(out / "images.arrow")
    paths = sorted(["broken.jpg", "notes.jpg", "sub/cmyk.jpg", "sub/turned.jpg"])
    paths = sorted(paths + [s.name for s in sources[:3]])
    expected_ids = {p: i + 1 for i, p in enumerate(paths)}  # 1..N in path order, skipped too
    assert list(images["image_id"]) == [expected_ids[p] for p in images["path"]]
    turned = images[images["path"] == "sub/turned.jpg"].iloc[0]
    assert (turned["width"], turned["height"]) == (40, 80)  # EXIF orientation applied
    assert ConceptIndex.open(out).assignment(turned["image_id"]).shape == (80, 40)
    assert not (out / "evaluation.json").exists()
    assert ConceptIndex.open(out).prototypes()["purity"].isna().all()


def test_bad_collections_are_clear_errors(indexing_data, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    config = dataclasses.replace(indexing_data["config"], images=empty, out=tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="no images"):
        build_index(config)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 1 image files"):
        build_index(dataclasses.replace(config, images=junk, annotations=()))
    assert not (tmp_path / "a").exists()
