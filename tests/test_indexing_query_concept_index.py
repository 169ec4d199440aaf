"""ConceptIndex: opening checks, every query against brute force, labels, uploads, threads."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from indexing import ConceptIndex, ImageRecord, IndexFormatError, IndexMismatchError, QueryResult
from indexing.build.pipeline import build_index
from indexing.scores.groundtruth import CocoLabels
from indexing.scores.metrics import ConfusionAccumulator, hungarian_scores, majority_vote_scores
from indexing.store.faiss_index import build_faiss, save_faiss
from model.checkpoint import load_encoder

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
SEGMENT = ["slot_id", "image_id", "prototype", "area", "score", "bbox"]


@pytest.fixture(scope="module")
def index(indexing_data) -> ConceptIndex:
    return ConceptIndex.open(indexing_data["index"], checkpoint=indexing_data["checkpoint"])


@pytest.fixture(scope="module")
def embeddings(index) -> np.ndarray:
    """(S, D) all stored slot vectors, by slot id."""
    return np.stack([index._searcher.reconstruct(i) for i in range(index.num_slots)])


def _hashes(*paths: Path) -> dict[str, str]:
    files = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*"))]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def test_open_checks_the_checkpoint(indexing_data) -> None:
    other = indexing_data["other_checkpoint"]
    with pytest.raises(IndexMismatchError) as caught:
        ConceptIndex.open(indexing_data["index"], checkpoint=other)
    message = str(caught.value)
    expected = hashlib.sha256(indexing_data["checkpoint"].read_bytes()).hexdigest()[:12]
    actual = hashlib.sha256(other.read_bytes()).hexdigest()[:12]
    assert expected in message and actual in message and "other.pt" in message
    with pytest.raises(FileNotFoundError):
        ConceptIndex.open(indexing_data["index"], checkpoint=other.with_name("missing.pt"))


def test_open_refuses_what_is_not_an_index(indexing_data, tmp_path) -> None:
    with pytest.raises(IndexFormatError, match="no manifest.json"):
        ConceptIndex.open(indexing_data["images"])
    with pytest.raises(FileNotFoundError):
        ConceptIndex.open(tmp_path / "nothing")
    old = tmp_path / "old"
    shutil.copytree(indexing_data["index"], old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps(manifest | {"format_version": 0}))
    with pytest.raises(IndexFormatError, match="format version 0"):
        ConceptIndex.open(old)
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / "slots.arrow").unlink()
    with pytest.raises(IndexFormatError, match="damaged"):
        ConceptIndex.open(old)


def test_attributes_and_prototypes(index, indexing_data) -> None:
    assert index.num_prototypes == 8
    assert index.image_root == indexing_data["images"].absolute()
    assert index.class_names[:2] == ["dotted disc", "striped square"]
    assert len(index.checkpoint_sha256) == 64
    table = index.prototypes()
    assert list(table.columns) == [
        "prototype", "images", "slots", "mean_area", "mean_score", "label", "dominant_class",
        "purity",
    ]  # fmt: skip
    assert list(table["prototype"]) == list(range(8))
    slots = pd.read_feather(indexing_data["index"] / "slots.arrow")
    np.testing.assert_allclose(
        table["mean_area"], slots.groupby("prototype")["area"].mean().reindex(range(8)), rtol=1e-5
    )
    confusion = index.confusion()
    assert confusion.shape == (8, len(index.class_names))
    dominant = [index.class_names[c] for c in confusion.argmax(axis=1)]
    assert list(table["dominant_class"]) == dominant
    np.testing.assert_allclose(table["purity"], confusion.max(axis=1) / confusion.sum(axis=1))
    vectors = index.prototype_vectors()
    assert vectors.shape == (8, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_image_ids_without_listing_them(index) -> None:
    ids = index.image_ids()
    assert len(set(ids)) == len(ids) == index.num_images
    assert index.image_id_range() == (min(ids), max(ids))
    assert [index.image_id_at(row) for row in range(index.num_images)] == ids
    with pytest.raises(IndexError):
        index.image_id_at(index.num_images)


def test_top_segments(index) -> None:
    for k in range(8):
        top = index.top_segments(k, 4)
        assert list(top.columns) == SEGMENT
        assert (top["prototype"] == k).all() and len(top) == min(4, index.prototypes()["slots"][k])
        assert np.all(np.diff(top["score"]) <= 0)
        everything = index.top_segments(k, 10_000)
        assert top["slot_id"].tolist() == everything["slot_id"].tolist()[:4]
    with pytest.raises(KeyError, match="unknown prototype 8"):
        index.top_segments(8, 3)


def test_similar_against_brute_force(index, embeddings) -> None:
    slot_image = np.array([index.slot(i)["image_id"] for i in range(index.num_slots)])
    slot_proto = np.array([index.slot(i)["prototype"] for i in range(index.num_slots)])
    for slot_id in (0, index.num_slots // 2, index.num_slots - 1):
        sims = embeddings @ embeddings[slot_id]
        found = index.similar(slot_id=slot_id, k=5, exclude_same_image=False)
        assert list(found.columns) == [*SEGMENT, "similarity"]
        assert found["slot_id"].iloc[0] == slot_id  # a slot is its own nearest neighbour
        np.testing.assert_allclose(found["similarity"].iloc[0], 1.0, atol=1e-5)
        np.testing.assert_allclose(found["similarity"], np.sort(sims)[::-1][:5], atol=1e-5)
        others = index.similar(slot_id=slot_id, k=5)
        assert (others["image_id"] != slot_image[slot_id]).all()
        allowed = slot_image != slot_image[slot_id]
        np.testing.assert_allclose(
            others["similarity"], np.sort(sims[allowed])[::-1][:5], atol=1e-5
        )
    # prototype filter: the rarest prototype, more results asked than it has (fetch grows)
    counts = np.bincount(slot_proto, minlength=8)
    rare = int(np.argmin(np.where(counts > 0, counts, len(slot_proto) + 1)))
    count = int((slot_proto == rare).sum())
    found = index.similar(slot_id=0, k=count + 5, prototype=rare, exclude_same_image=False)
    assert len(found) == count and (found["prototype"] == rare).all()
    sims = embeddings[slot_proto == rare] @ embeddings[0]
    np.testing.assert_allclose(found["similarity"], np.sort(sims)[::-1], atol=1e-5)


@pytest.fixture(scope="module")
def ivf_index(indexing_data, tmp_path_factory, embeddings) -> ConceptIndex:
    """The fixture index with its slots in an IVF,SQ8,RFlat faiss index instead of Flat."""
    root = tmp_path_factory.mktemp("ivf") / "index"
    shutil.copytree(indexing_data["index"], root)
    store, info = build_faiss(embeddings, "ivf")
    assert info["type"] == "ivf" and info["factory"].endswith(",RFlat")
    save_faiss(store, root / "slots.faiss")
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps(manifest | {"faiss": info}))
    return ConceptIndex.open(root)


@pytest.mark.parametrize("kind", ["flat", "ivf-selectors", "ivf-exact"])
def test_similar_filters_against_brute_force(kind, index, ivf_index, embeddings, monkeypatch):
    """Excluding the query's image and restricting to one prototype, on a real faiss index of
    each type: the neighbours of brute force over the admitted slots. ivf-selectors: the
    prototype filter goes through faiss's IDSelectorBatch (EXACT_FILTER_POOL 0); ivf-exact:
    through the exact search of a small prototype."""
    if kind == "ivf-selectors":
        monkeypatch.setattr("indexing.query.search.EXACT_FILTER_POOL", 0)
    searched = index if kind == "flat" else ivf_index
    assert searched._searcher.approximate == (kind != "flat")
    slot_image = np.array([index.slot(i)["image_id"] for i in range(index.num_slots)])
    slot_proto = np.array([index.slot(i)["prototype"] for i in range(index.num_slots)])
    for slot_id in range(0, index.num_slots, max(1, index.num_slots // 12)):
        sims = embeddings @ embeddings[slot_id]
        other_image = slot_image != slot_image[slot_id]
        for prototype in (None, int(slot_proto[slot_id]), int(slot_proto[-1 - slot_id])):
            admitted = other_image & (True if prototype is None else slot_proto == prototype)
            rows = np.flatnonzero(admitted)
            expected = rows[np.argsort(-sims[rows], kind="stable")[:6]]
            found = searched.similar(slot_id=slot_id, k=6, prototype=prototype)
            assert admitted[found["slot_id"]].all()
            np.testing.assert_allclose(found["similarity"], sims[expected], atol=1e-5)
            assert len(found) == len(expected)
            kept = searched.similar(
                slot_id=slot_id, k=6, prototype=prototype, exclude_same_image=False
            )
            assert slot_id in set(kept["slot_id"]) or prototype != slot_proto[slot_id]


def test_similar_by_vector_and_bad_arguments(index, embeddings) -> None:
    vector = embeddings[3] * 7.0  # any length: normalised before the search
    found = index.similar(vector=vector, k=3, exclude_same_image=True)
    assert found["slot_id"].iloc[0] == 3  # no image to exclude for a vector
    assert index.similar(slot_id=3, k=0).empty
    with pytest.raises(ValueError, match="exactly one"):
        index.similar(k=3)
    with pytest.raises(ValueError, match="exactly one"):
        index.similar(slot_id=1, vector=vector)
    with pytest.raises(ValueError):
        index.similar(vector=np.zeros(5))
    with pytest.raises(KeyError, match="unknown slot"):
        index.similar(slot_id=index.num_slots)


def test_slot_and_image(index, indexing_data) -> None:
    slot = index.slot(5)
    assert set(slot) == set(SEGMENT) and isinstance(slot["bbox"], list)
    record = index.image(slot["image_id"])
    assert isinstance(record, ImageRecord)
    assert record.path == indexing_data["images"].absolute() / record.path.name
    assert record.path.is_file() and (record.width, record.height) == (64, 64)
    assert record.assignment.shape == (64, 64) and record.assignment.dtype == np.int16
    assert 5 in set(record.slots["slot_id"])
    assert (record.slots["image_id"] == slot["image_id"]).all()
    assert sorted(set(np.unique(record.assignment))) == sorted(record.slots["prototype"])
    ids = index.image_ids()
    assert len(ids) == 32 and slot["image_id"] in ids
    with pytest.raises(KeyError, match="unknown image id"):
        index.image(10_000)
    with pytest.raises(KeyError, match="unknown slot"):
        index.slot(-1)


def test_evaluation_is_the_library_on_the_stored_maps(index, indexing_data) -> None:
    labels = CocoLabels(indexing_data["annotations"])
    acc = ConfusionAccumulator(8, labels.num_classes)
    for image_id in index.image_ids():
        acc.update(index.image(image_id).assignment, labels.label_map(image_id))
    np.testing.assert_array_equal(index.confusion(), acc.counts)
    stored = index.evaluation()
    hungarian = hungarian_scores(acc.counts, index.prototype_vectors())
    majority = majority_vote_scores(acc.counts)
    assert stored["hungarian"] == hungarian.to_dict(labels.class_names, labels.class_is_thing)
    assert stored["majority"] == majority.to_dict(labels.class_names, labels.class_is_thing)
    assert stored["images_evaluated"] == 32


def test_query_image_changes_nothing(index, indexing_data) -> None:
    encoder = load_encoder(indexing_data["checkpoint"], "cpu")
    root = indexing_data["index"]
    labels_file = root.with_name(root.name + ".labels.json")
    before = _hashes(root, *([labels_file] if labels_file.exists() else []))
    image_id = index.image_ids()[7]
    record = index.image(image_id)
    upload = Image.open(record.path)
    result = index.query_image(upload, encoder, k=3)
    assert isinstance(result, QueryResult)
    assert list(result.segments.columns) == ["prototype", "area", "score", "bbox"]
    assert np.all(np.diff(result.segments["area"]) <= 0)
    # the same file as a collection image: the same segments, each finding its own slot first
    assert sorted(result.segments["prototype"]) == sorted(record.slots["prototype"])
    np.testing.assert_array_equal(result.grouping.assignment, record.assignment)
    _assert_same_rows(result.segments, record.slots)
    for _, slot in record.slots.iterrows():
        neighbours = result.neighbours[int(slot["prototype"])]
        assert len(neighbours) == 3
        assert neighbours["slot_id"].iloc[0] == slot["slot_id"]
        assert neighbours["similarity"].iloc[0] > 0.9999
    assert _hashes(root, *([labels_file] if labels_file.exists() else [])) == before
    with pytest.raises(IndexMismatchError):
        index.query_image(upload, load_encoder(indexing_data["other_checkpoint"], "cpu"))


def _assert_same_rows(segments: pd.DataFrame, slots: pd.DataFrame) -> None:
    """An upload's segments are the slot rows the build stored for the same image."""
    segments = segments.sort_values("prototype").reset_index(drop=True)
    assert segments["prototype"].tolist() == slots["prototype"].tolist()
    np.testing.assert_allclose(segments["area"], slots["area"], atol=1e-6)
    np.testing.assert_allclose(segments["score"], slots["score"], atol=1e-5)
    assert segments["bbox"].tolist() == slots["bbox"].tolist()


def test_query_image_with_k_0_groups_without_searching(index, indexing_data) -> None:
    """k = 0 (what the app asks for an upload): the same grouping and segments, no neighbours."""
    encoder = load_encoder(indexing_data["checkpoint"], "cpu")
    upload = Image.open(index.image(index.image_ids()[3]).path)
    grouped = index.query_image(upload, encoder, k=0)
    searched = index.query_image(upload, encoder, k=1)
    assert grouped.neighbours == {}
    assert len(searched.neighbours) == len(searched.segments) > 0
    np.testing.assert_array_equal(grouped.grouping.assignment, searched.grouping.assignment)
    pd.testing.assert_frame_equal(grouped.segments, searched.segments)


def test_query_image_extracts_as_the_build_did(indexing_data, tmp_path) -> None:
    """An index built through the authors' view (crop and cell scores): an upload goes through
    the same view, so an indexed image uploaded again gives the stored rows."""
    config = dataclasses.replace(indexing_data["config"], out=tmp_path / "crop", authors_crop=True)
    index = ConceptIndex.open(build_index(config))
    encoder = load_encoder(indexing_data["checkpoint"], "cpu")
    for image_id in index.image_ids()[:3]:
        record = index.image(image_id)
        result = index.query_image(Image.open(record.path), encoder, k=1)
        np.testing.assert_array_equal(result.grouping.assignment, record.assignment)
        _assert_same_rows(result.segments, record.slots)
        present = result.grouping.pixels > 0
        assert (
            present.sum() == len(record.slots)
            and result.grouping.pixels.sum() < record.assignment.size
        )
        assert np.isnan(result.grouping.score[~present]).all()


def test_concurrent_readers_get_serial_answers(index) -> None:
    slot_ids = list(range(0, index.num_slots, 3))
    serial = [index.similar(slot_id=s, k=4)["slot_id"].tolist() for s in slot_ids]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(
            pool.map(lambda s: index.similar(slot_id=s, k=4)["slot_id"].tolist(), slot_ids)
        )
    assert parallel == serial


def test_labels_persist_and_survive_a_rebuild(indexing_data, tmp_path) -> None:
    config = dataclasses.replace(indexing_data["config"], out=tmp_path / "index", annotations=())
    build_index(config)
    index = ConceptIndex.open(config.out)
    index.set_label(2, "  sky  ")
    index.set_label(5, "brick\nwall")
    with ThreadPoolExecutor(4) as pool:  # concurrent writers: every name is kept
        list(pool.map(lambda k: index.set_label(k, f"name {k}"), [0, 1, 3, 4]))
    labels_file = tmp_path / "index.labels.json"
    assert labels_file.is_file() and not (config.out / "labels.json").exists()
    expected = {0: "name 0", 1: "name 1", 2: "sky", 3: "name 3", 4: "name 4", 5: "brick wall"}
    assert ConceptIndex.open(config.out).labels() == expected
    index.set_label(4, "")  # removes the name
    del expected[4]
    table = ConceptIndex.open(config.out).prototypes()
    assert dict(zip(table["prototype"], table["label"])) == {
        k: expected.get(k, "") for k in range(8)
    }
    with pytest.raises(KeyError):
        index.set_label(8, "nope")
    build_index(config)  # same checkpoint: the names are still there
    assert ConceptIndex.open(config.out).labels() == expected
    other = dataclasses.replace(config, checkpoint=indexing_data["other_checkpoint"])
    build_index(other)  # another model: its prototypes have no names yet
    assert ConceptIndex.open(config.out).labels() == {}
    assert json.loads(labels_file.read_text())["checkpoints"][index.checkpoint_sha256] == {
        str(k): v for k, v in expected.items()
    }


def test_ivf_index_answers_queries(ivf_index) -> None:
    found = ivf_index.similar(slot_id=10, k=3, exclude_same_image=False)
    assert found["slot_id"].iloc[0] == 10
    np.testing.assert_allclose(found["similarity"].iloc[0], 1.0, atol=1e-5)
