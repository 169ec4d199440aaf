"""Batching does not change groupings: batches of one padded shape, and the same index from
real photos of mixed sizes whatever the batch size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PHOTOS

from indexing import ConceptIndex
from indexing.build.batching import batches_of_one_shape, stack_items
from indexing.build.config import BuildConfig
from indexing.build.extract import Item
from indexing.build.pipeline import build_index
from model.checkpoint import load_encoder
from model.data import load_rgb
from model.transforms import assign_pixels

DEMO_CHECKPOINT = Path(__file__).parents[1] / "assets" / "demo_encoder.pt"


def _item(position: int, h: int, w: int) -> Item:
    return Item(position, torch.full((3, h, w), float(position)), None, "", None)


def _unreadable(position: int) -> Item:
    return Item(position, None, None, f"file {position}: not an image", None)


def test_batches_hold_one_shape_and_every_item_once() -> None:
    shapes = [(32, 48), (48, 32), (32, 48), (32, 32), (32, 48), (48, 32), (32, 48), (32, 32)]
    items = [_item(i, h, w) for i, (h, w) in enumerate(shapes)] + [_unreadable(8)]
    loaded = [items[0:3], items[3:6], items[6:9]]  # as the DataLoader hands them over
    batches = list(batches_of_one_shape(loaded, batch_size=3))
    seen = [item.position for batch in batches for item in batch.items]
    assert sorted(seen) == list(range(9))
    for batch in batches:
        if batch.x is None:
            assert [item.position for item in batch.items] == [8]
            continue
        assert len(batch.items) <= 3 and len({tuple(i.x.shape) for i in batch.items}) == 1
        for row, item in zip(batch.x, batch.items):  # each image unpadded, itself
            torch.testing.assert_close(row, item.x)
    assert [i.position for i in batches[0].items] == [0, 2, 4]  # full bucket goes first
    # same input, same batches
    again = list(batches_of_one_shape(loaded, batch_size=3))
    assert [[i.position for i in b.items] for b in again] == [
        [i.position for i in b.items] for b in batches
    ]


def test_waiting_images_are_bounded() -> None:
    # five shapes in turn, batches of 4: buckets fill slowly, so the bound decides
    items = [_item(i, 16, 16 * (1 + i % 5)) for i in range(40)]
    taken = emitted = 0
    most_waiting = 0

    def loaded():
        nonlocal taken
        for item in items:
            taken += 1
            yield [item]

    for batch in batches_of_one_shape(loaded(), batch_size=4, max_pending=6):
        emitted += len(batch.items)
        most_waiting = max(most_waiting, taken - emitted)
        assert len({tuple(i.x.shape) for i in batch.items}) == 1
    assert emitted == 40
    assert most_waiting <= 6


def test_stack_refuses_mixed_shapes() -> None:
    with pytest.raises(ValueError, match="one padded shape"):
        stack_items([_item(0, 16, 16), _item(1, 16, 32)])
    with pytest.raises(ValueError, match="batch size"):
        list(batches_of_one_shape([], batch_size=0))


def test_photo_alone_and_in_a_batch_of_its_shape_give_the_same_grouping(photos) -> None:
    encoder = load_encoder(DEMO_CHECKPOINT, "cpu")
    # astronaut and camera are both 512 x 512: one padded shape
    pair = [p for p in photos if p.name in ("astronaut.png", "camera.png")]
    prepared = [encoder.preprocess(load_rgb(p)) for p in pair]
    x = torch.cat([x for x, _ in prepared] * 3)  # (6, 3, H', W')
    infos = [info for _, info in prepared] * 3
    batched = encoder(x, encoder.valid_mask(infos, tuple(x.shape[-2:])))
    for i, (xi, info) in enumerate(prepared):
        alone = encoder(xi, encoder.valid_mask([info], tuple(xi.shape[-2:])))
        torch.testing.assert_close(batched.dots[i], alone.dots[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(batched.slots[i], alone.slots[0], rtol=0, atol=1e-5)
        a = assign_pixels(batched.dots[i], info, encoder.stride)
        b = assign_pixels(alone.dots[0], info, encoder.stride)
        np.testing.assert_array_equal(a[0], b[0])


def build_tables(
    images: Path, out: Path, batch_size: int, chunk_size: int = 256, device: str = "cpu"
) -> dict:
    """Index `images` with the demo model; its slots, images, maps and manifest."""
    build_index(
        BuildConfig(
            checkpoint=DEMO_CHECKPOINT,
            images=images,
            out=out,
            batch_size=batch_size,
            device=device,
            workers=0,
            chunk_size=chunk_size,
        )
    )
    index = ConceptIndex.open(out)
    return {
        "slots": pd.read_feather(out / "slots.arrow"),
        "images": pd.read_feather(out / "images.arrow"),
        "maps": {i: index.assignment(i) for i in index.image_ids()},
        "manifest": json.loads((out / "manifest.json").read_text()),
    }


@pytest.mark.slow
def test_index_of_mixed_size_photos_does_not_depend_on_the_batch_size(photos, tmp_path) -> None:
    """The demo model on 8 real photos of 6 padded shapes: batches of 1, of 8, and of 8 cut
    into chunks of 3, pixel for pixel (before: up to a quarter of an image's pixels moved)."""
    assert_batch_size_does_not_matter(photos[0].parent, tmp_path, "cpu")


def assert_batch_size_does_not_matter(
    images: Path, tmp_path: Path, device: str, near_ties: float = 0.0
) -> None:
    """Batches of 1, of 8, of 8 in chunks of 3 and of 3 give the same index. near_ties: the
    share of an image's pixels allowed to change prototype (cuDNN picks its kernels by batch
    size, which moves features by ~4e-6 on an H200); such an image's slot rows are then not
    compared exactly."""
    alone = build_tables(images, tmp_path / "b1", batch_size=1, device=device)
    assert alone["manifest"]["counts"]["images"] == len(PHOTOS)
    assert alone["manifest"]["counts"]["skipped"] == 0
    sizes = {(w, h) for w, h, _ in PHOTOS.values()}
    assert set(zip(alone["images"]["width"], alone["images"]["height"])) == sizes
    for batch_size, chunk_size in ((8, 256), (8, 3), (3, 256)):
        out = tmp_path / f"b{batch_size}c{chunk_size}"
        other = build_tables(images, out, batch_size, chunk_size, device)
        assert other["maps"].keys() == alone["maps"].keys()
        moved = set()
        for name, assignment in alone["maps"].items():
            differing = int((other["maps"][name] != assignment).sum())
            assert differing <= near_ties * assignment.size, (name, differing)
            if differing:
                moved.add(name)
        same = ~alone["slots"]["image_id"].isin(moved)
        assert same.sum() > len(alone["slots"]) // 2
        exact = ["slot_id", "image_id", "prototype", "bbox_x", "bbox_y", "bbox_w", "bbox_h"]
        unmoved = other["slots"][~other["slots"]["image_id"].isin(moved)].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            unmoved[exact].drop(columns="slot_id"),
            alone["slots"][same].reset_index(drop=True)[exact].drop(columns="slot_id"),
        )
        if not moved:
            pd.testing.assert_frame_equal(other["slots"][exact], alone["slots"][exact])
        for column in ("area", "score"):
            np.testing.assert_allclose(unmoved[column], alone["slots"][same][column], atol=1e-5)
