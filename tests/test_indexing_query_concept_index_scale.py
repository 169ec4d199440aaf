"""Scale, at small sizes: synthetic indexes in the real format (bench/synthetic_index.py), the
index type chosen by size, recall of the approximate search against exact search, lazy (mapped)
opening, packed assignment maps, and the message for an index of an older format."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from test_bench import load

import app
from indexing import ConceptIndex, IndexFormatError
from indexing.cli import main
from indexing.query import search
from indexing.query.search import exact_search, recall_at_k
from indexing.store import faiss_index
from indexing.store.assignments import ShardWriter, encode_assignment, read_assignment, shard_path
from indexing.store.faiss_index import ivf_layout
from indexing.store.rows import bounding_boxes

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def synthetic_index():
    return load("synthetic_index")


@pytest.fixture(scope="module")
def small(synthetic_index, tmp_path_factory) -> Path:
    """20,000 segments (auto: a flat index), 200 annotated images."""
    cfg = synthetic_index.SyntheticConfig(slots=20_000, annotated=200)
    return synthetic_index.write_synthetic_index(cfg, tmp_path_factory.mktemp("scale") / "small")


@pytest.fixture(scope="module")
def approximate(synthetic_index, tmp_path_factory) -> Path:
    """4,000 segments whose size is above a lowered flat limit: auto picks IVF."""
    faiss_index.FLAT_MAX_SLOTS, limit = 1000, faiss_index.FLAT_MAX_SLOTS
    try:
        cfg = synthetic_index.SyntheticConfig(slots=4000, annotated=0, seed=1)
        root = tmp_path_factory.mktemp("scale") / "ivf"
        return synthetic_index.write_synthetic_index(cfg, root)
    finally:
        faiss_index.FLAT_MAX_SLOTS = limit


def test_synthetic_index_opens_like_a_built_one(small) -> None:
    index = ConceptIndex.open(small)
    assert index.num_slots == 20_000 and index.num_prototypes == 32 and index.dim == 32
    assert index.manifest["faiss"]["type"] == "flat"  # auto, below FLAT_MAX_SLOTS
    assert sorted(p.name for p in (small / "assignments").iterdir()) == ["00000.bin"]
    rng = np.random.default_rng(0)
    for image_id in rng.choice(index.image_ids(), 20, replace=False):
        record = index.image(image_id)
        assert record.path.is_file() and record.path.stat().st_nlink > 1  # a hard link
        pixels = np.bincount(record.assignment.ravel(), minlength=32)
        present = np.flatnonzero(pixels)
        assert list(record.slots["prototype"]) == list(present)
        np.testing.assert_allclose(record.slots["area"], pixels[present] / pixels.sum(), 1e-6)
        boxes = bounding_boxes(record.assignment, 32)[present]
        assert record.slots["bbox"].tolist() == boxes.tolist()
    top = index.top_segments(3, 12)
    assert (top["prototype"] == 3).all() and np.all(np.diff(top["score"]) <= 0)
    hits = index.similar(slot_id=77, k=5, exclude_same_image=False)
    assert hits["slot_id"].iloc[0] == 77


def test_evaluate_reproduces_the_stored_scores(small, tmp_path, capsys) -> None:
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--index", str(small), "--out-json", str(out)]) == 0
    scores = json.loads(out.read_text())
    stored = json.loads((small / "evaluation.json").read_text())
    assert scores["images_evaluated"] == stored["images_evaluated"] == 200
    for mapping in ("majority", "hungarian"):
        assert scores[mapping]["miou"] == pytest.approx(stored[mapping]["miou"])
    assert stored["majority"]["miou"] > 0.5  # each prototype has a home class
    capsys.readouterr()


def test_index_type_follows_the_size_and_recall_holds(approximate) -> None:
    index = ConceptIndex.open(approximate)
    info = index.manifest["faiss"]
    layout = ivf_layout(4000)
    assert (info["type"], info["factory"], info["nprobe"]) == ("ivf", layout.factory, layout.nprobe)
    searcher = index._searcher
    assert searcher.approximate
    queries = np.stack([searcher.reconstruct(s) for s in range(0, 4000, 20)])  # (200, D)
    _, found = searcher.search(queries, 10)
    _, exact = exact_search(searcher.vectors, queries, 10)
    assert recall_at_k(found, exact) >= 0.95
    hits = index.similar(slot_id=123, k=10)
    vector = searcher.reconstruct(123)
    np.testing.assert_allclose(  # similarities are exact: re-ranked with the stored vectors
        hits["similarity"], searcher.vectors[hits["slot_id"].to_numpy()] @ vector, atol=1e-5
    )
    assert np.all(np.diff(hits["similarity"]) <= 1e-6)
    assert index.slot(123)["image_id"] not in set(hits["image_id"])


@pytest.mark.parametrize("exact_pool", [search.EXACT_FILTER_POOL, 0])
def test_filtered_search_on_ivf(approximate, exact_pool, monkeypatch) -> None:
    """A prototype filter: exact over a small prototype's slots; with the IVF candidates
    (exact_pool 0), only the prototype's slots, exact similarities, and near-exact results for
    the query's own prototype."""
    monkeypatch.setattr(search, "EXACT_FILTER_POOL", exact_pool)
    index = ConceptIndex.open(approximate)
    vectors = index._searcher.vectors
    table = index.prototypes()
    overlaps = []
    for slot_id in range(0, 4000, 97):
        own_image, own = index.slot(slot_id)["image_id"], index.slot(slot_id)["prototype"]
        for prototype in {own, (own + 1) % 32}:
            if table["slots"][prototype] <= 12:
                continue
            admitted = (index._slot_proto[:] == prototype) & (index._slot_image[:] != own_image)
            rows = np.flatnonzero(admitted)
            best = rows[np.argsort(-(vectors[rows] @ vectors[slot_id]), kind="stable")[:10]]
            hits = index.similar(slot_id=slot_id, k=10, prototype=prototype)
            assert len(hits) == 10 and (hits["prototype"] == prototype).all()
            cosines = vectors[hits["slot_id"].to_numpy()] @ vectors[slot_id]
            np.testing.assert_allclose(hits["similarity"], cosines, atol=1e-5)
            if exact_pool:
                assert hits["slot_id"].tolist() == best.tolist()
            elif prototype == own:
                overlaps.append(len(set(best) & set(hits["slot_id"])) / 10)
    assert not overlaps or np.mean(overlaps) >= 0.95


def test_opening_maps_the_tables_and_reads_little(small) -> None:
    ConceptIndex.open(small)  # imports and caches out of the way
    tracemalloc.start()
    index = ConceptIndex.open(small)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    mapped = ["slots.arrow", "images.arrow", "slots.faiss", "slots_ranked.npy"]
    big = sum((small / name).stat().st_size for name in mapped)
    assert peak < big / 4, (peak, big)  # no table is read whole
    maps = Path("/proc/self/maps").read_text()
    assert all(str(small / name) in maps for name in mapped)
    for array in (index._slot_area, index._slot_image, index._ranked, index._searcher.vectors):
        assert not array.flags.owndata and not array.flags.writeable


def test_an_older_index_is_refused_with_the_way_out(small, tmp_path, capsys) -> None:
    old = tmp_path / "old"
    shutil.copytree(small, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps(manifest | {"format_version": 1}))
    with pytest.raises(IndexFormatError) as caught:
        ConceptIndex.open(old)
    message = str(caught.value)
    assert "format version 1 (written by an earlier version" in message
    assert "reads version 2" in message and "rebuild it with `python -m indexing build`" in message
    assert main(["evaluate", "--index", str(old)]) == 1
    assert "format version 1" in capsys.readouterr().err
    assert app.main(["--index", str(old)]) == 1
    err = capsys.readouterr().err
    assert "format version 1" in err and "Traceback" not in err


def test_assignment_shards_roll_over_and_read_back(tmp_path) -> None:
    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 300, (int(h), 17)).astype(np.int16) for h in rng.integers(5, 40, 12)]
    with ShardWriter(tmp_path, shard_bytes=1500) as shards:
        where = [shards.add(encode_assignment(m, 300)) for m in maps]  # 16-bit PNGs
    assert len({shard for shard, _, _ in where}) > 2
    for assignment, (shard, offset, length) in zip(maps, where):
        np.testing.assert_array_equal(read_assignment(tmp_path, shard, offset, length), assignment)
    shard, offset, length = where[-1]
    with open(shard_path(tmp_path, shard), "r+b") as f:
        f.truncate(offset + length // 2)
    with pytest.raises(ValueError, match="truncated"):
        read_assignment(tmp_path, shard, offset, length)


def test_bench_writes_and_measures_a_small_index(tmp_path, capsys) -> None:
    bench = load("index_scale")
    out = tmp_path / "summary.json"
    args = ["--slots", "3000", "--out", str(tmp_path / "index"), "--measure", "--queries", "30"]
    assert bench.main([*args, "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["slots"] == 3000 and summary["library"]["recall_at_10"] == 1.0
    assert summary["library"]["warm"]["similar"]["p50_ms"] > 0 and summary["files"] < 20
    assert "| 3,000 |" in capsys.readouterr().out  # (no timing is asserted)
