"""indexing.store.schema: the rows extraction produces, the Chunk round trip, the table columns
and a manifest that passes its own check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexing.build.tables import images_table, slots_table
from indexing.store.schema import (
    IMAGE_ARRAYS,
    SLOT_ARRAYS,
    SLOT_COLUMNS,
    Chunk,
    ImageSlots,
    index_manifest,
    manifest_header,
    manifest_problem,
    model_entry,
)


def _rows(prototypes: list[int], D: int, seed: int) -> ImageSlots:
    rng = np.random.default_rng(seed)
    S = len(prototypes)
    return ImageSlots(
        assignment=np.zeros((4, 6), np.int16),
        prototype=np.array(prototypes, np.int64),
        area=rng.random(S).astype(np.float32),
        score=rng.random(S).astype(np.float32),
        bbox=rng.integers(0, 6, (S, 4)).astype(np.int32),
        embedding=rng.standard_normal((S, D)).astype(np.float32),
    )


def test_slot_arrays_are_the_extraction_rows() -> None:
    assert list(SLOT_ARRAYS) == [f for f in ImageSlots._fields if f != "assignment"]
    assert set(IMAGE_ARRAYS) | {"slot_position", *SLOT_ARRAYS} <= set(Chunk.__dataclass_fields__)


def test_chunk_from_images_round_trip_and_merge(tmp_path) -> None:
    D = 3
    first = Chunk.from_images(
        [(2, 6, 4, ""), (0, 0, 0, "unreadable")],
        [(2, _rows([1, 4], D, 0))],
        [17, 0],
        D,
        np.zeros((0, 0), np.int64),
    )
    assert first.map_offset.tolist() == [0, 17] and first.slot_position.tolist() == [2, 2]
    path = tmp_path / "c.npz"
    path.write_bytes(first.to_npz())
    loaded = Chunk.load(path)
    for name in Chunk.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(first, name))
    second = Chunk.from_images([(1, 6, 4, "")], [(1, _rows([0], D, 1))], [9], D, np.zeros((0, 0)))
    merged = Chunk.concatenate([loaded, second], D, (5, 0))
    assert merged.positions.tolist() == [0, 1, 2] and merged.error.tolist()[0] == "unreadable"
    assert merged.slot_position.tolist() == [1, 2, 2] and merged.prototype.tolist() == [0, 1, 4]
    assert merged.embedding.shape == (3, D) and merged.bbox.dtype == np.int32
    empty = Chunk.concatenate([], D, (5, 2))
    assert empty.embedding.shape == (0, D) and empty.confusion.shape == (5, 2)
    table = slots_table(merged, image_ids=[10, 11, 12])
    assert tuple(table.columns) == SLOT_COLUMNS
    assert table["image_id"].tolist() == [11, 12, 12]
    images = images_table(merged, ["a", "b", "c"], [10, 11, 12])
    assert images["path"].tolist() == ["b", "c"] and images["image_id"].tolist() == [11, 12]
    assert images["slot_start"].tolist() == [0, 1] and images["slot_count"].tolist() == [1, 2]


def test_manifest_passes_its_check(tmp_path) -> None:
    model = model_entry(
        arch="resnet18", width=0.25, num_prototypes=8, dim=16, input_size=64, stride=8, config={}
    )
    header = manifest_header(
        checkpoint_path="enc.pt", checkpoint_sha256="ab" * 32, model=model, image_root=tmp_path
    )
    assert header["image_ids"] == "path order" and header["annotations"] == []
    manifest = index_manifest(header, {"images": 1, "slots": 2, "skipped": 0}, [], {"type": "flat"})
    assert manifest["format_version"] == 2 and manifest_problem(manifest) == ""
    broken = {**manifest, "model": {**model, "dim": 0}}
    assert manifest_problem(broken) == "'model.dim' is a int (0), expected an integer >= 1"
    annotated = manifest_header(
        checkpoint_path="enc.pt",
        checkpoint_sha256="ab" * 32,
        model=model,
        image_root=tmp_path,
        annotations=["a.json"],
    )
    assert annotated["image_ids"] == "annotations"
    assert annotated["annotations"] == [str(Path("a.json").absolute())]
