"""indexing.compare.correspondence: correspondence of two indexes on hand-made maps with known
answers, on real (tiny) indexes of the same scenes with K = 8 and K = 5, the command line,
refusals."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import save_random_encoder

from indexing.compare.correspondence import (
    Correspondence,
    ImageSetMismatch,
    accumulate,
    correspondence,
    long_table,
    pair_images,
    write_outputs,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# A: K_A = 3, prototype 2 absent; B: K_B = 4, prototype 2 absent.
MAP_A = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], dtype=np.int16)
MAP_B = np.array([[3, 3, 0, 0], [3, 3, 0, 1]], dtype=np.int16)


def known() -> Correspondence:
    counts = np.zeros((3, 4), dtype=np.int64)
    accumulate(counts, MAP_A, MAP_B)
    return Correspondence(counts=counts, images=1)


def test_counts_iou_and_matching_on_hand_made_maps():
    result = known()
    assert result.counts.tolist() == [[0, 0, 0, 4], [3, 1, 0, 0], [0, 0, 0, 0]]
    iou = result.iou()
    assert iou[0, 3] == 1.0 and iou[1, 0] == 0.75 and iou[1, 1] == 0.25
    assert iou[2, 0] == 0.0 and np.isnan(iou[2, 2])  # absent in both: undefined
    pairs = result.matching()
    assert pairs[["a", "b", "pixels"]].values.tolist() == [[0, 3, 4], [1, 0, 3]]
    assert pairs["iou"].tolist() == [1.0, 0.75]


def test_partners_of_both_sides_including_absent_prototypes():
    result = known()
    a = result.partners("a")
    assert a["partner"].tolist() == [3, 0, -1] and a["matched"].tolist() == [3, 0, -1]
    assert a["pixels"].tolist() == [4, 4, 0] and np.isnan(a["partner_iou"].iloc[2])
    b = result.partners("b")
    assert b["partner"].tolist() == [1, 1, -1, 0]
    assert b["matched"].tolist() == [1, -1, -1, 0]  # b1's best partner a1 is taken by b0
    assert b["partner_iou"].iloc[1] == 0.25 and np.isnan(b["matched_iou"].iloc[1])


def test_agreement_identical_renamed_and_independent():
    three = np.array([[0, 0, 1, 1], [0, 0, 2, 2]])
    same = np.zeros((3, 5), dtype=np.int64)
    accumulate(same, three, np.array([4, 0, 2])[three])  # the same partition, renamed
    agree = Correspondence(same, 1).agreement()
    assert agree["nmi"] == pytest.approx(1.0) and agree["cramers_v"] == pytest.approx(1.0)
    rows = np.repeat([[0], [1]], 4, axis=1)  # top / bottom halves
    cols = np.repeat([[0, 0, 1, 1]], 2, axis=0)  # left / right halves: independent of rows
    independent = np.zeros((2, 2), dtype=np.int64)
    accumulate(independent, rows, cols)
    agree = Correspondence(independent, 1).agreement()
    assert agree["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert agree["cramers_v"] == pytest.approx(0.0, abs=1e-12)
    assert agree["pixels"] == 8


class FakeIndex:
    """The three things correspondence() reads from a ConceptIndex."""

    def __init__(self, maps: dict[str, np.ndarray], k: int, first_id: int = 0):
        self.maps = {first_id + i: m for i, m in enumerate(maps.values())}
        self.paths = list(maps)
        self.num_prototypes = k

    def images_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "image_id": list(self.maps),
                "path": self.paths,
                "width": [m.shape[1] for m in self.maps.values()],
                "height": [m.shape[0] for m in self.maps.values()],
            }
        )

    def assignment(self, image_id: int) -> np.ndarray:
        return self.maps[image_id]


def test_streams_images_paired_by_path_not_id():
    a = FakeIndex({"x.jpg": MAP_A, "y.jpg": MAP_A[:, ::-1]}, 3)
    # B lists the images in another order and numbers them differently
    b = FakeIndex({"y.jpg": MAP_B[:, ::-1], "x.jpg": MAP_B}, 4, first_id=100)
    result = correspondence(a, b, progress=False)
    assert result.images == 2
    assert result.counts.tolist() == [[0, 0, 0, 8], [6, 2, 0, 0], [0, 0, 0, 0]]


def test_different_image_sets_are_refused_with_counts():
    a = FakeIndex({"x.jpg": MAP_A, "y.jpg": MAP_A, "z.jpg": MAP_A}, 3).images_table()
    b = FakeIndex({"x.jpg": MAP_B, "w.jpg": MAP_B}, 4).images_table()
    with pytest.raises(ImageSetMismatch, match=r"3 images differ \(2 only in A, 1 only in B"):
        pair_images(a, b)
    resized = FakeIndex({"x.jpg": MAP_B[:, :2]}, 4).images_table()
    with pytest.raises(ImageSetMismatch, match="1 images differ in size"):
        pair_images(a.head(1), resized)


def test_outputs_round_trip(tmp_path):
    written = write_outputs(tmp_path / "cmp", known())
    assert [p.name for p in written] == [
        "correspondence.parquet",
        "partners.parquet",
        "summary.json",
    ]
    table = pd.read_parquet(tmp_path / "cmp" / "correspondence.parquet")
    assert table.equals(long_table(known()))
    assert table["matched"].tolist() == [True, True, False]  # cells (0,3), (1,0), (1,1)
    info = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert info["shape"] == [3, 4] and info["present"] == {"a": 2, "b": 3}
    assert info["partners_a"][2]["partner_iou"] is None  # NaN -> null, valid JSON
    partners = pd.read_parquet(tmp_path / "cmp" / "partners.parquet")
    assert len(partners) == 3 + 4 and set(partners["model"]) == {"a", "b"}


# ---- real indexes: the session's scenes indexed by K = 8 (fixture) and by a K = 5 encoder -------


@pytest.fixture(scope="module")
def two_indexes(indexing_data, tmp_path_factory) -> dict:
    """Keys: a (the fixture's index, K = 8, ids from the annotations), b (same images, K = 5,
    ids in path order), subset (the same model over 28 of the 32 images)."""
    from indexing.build.pipeline import build_index

    root = tmp_path_factory.mktemp("compare")
    config = indexing_data["config"]
    b = dataclasses.replace(
        config,
        checkpoint=save_random_encoder(root / "k5.pt", seed=7, num_prototypes=5),
        out=root / "index-b",
        annotations=(),
    )
    build_index(b)
    subset = root / "subset"
    subset.mkdir()
    for path in sorted(config.images.glob("*.jpg"))[:28]:
        shutil.copyfile(path, subset / path.name)
    build_index(dataclasses.replace(config, images=subset, out=root / "index-subset"))
    return {"a": config.out, "b": b.out, "subset": root / "index-subset", "root": root}


def test_real_indexes_k8_against_k5(two_indexes):
    from indexing import ConceptIndex

    a, b = ConceptIndex.open(two_indexes["a"]), ConceptIndex.open(two_indexes["b"])
    result = correspondence(a, b, progress=False)
    assert result.shape == (8, 5) and result.images == 32
    assert result.counts.sum() == sum(a.assignment(i).size for i in a.image_ids())
    assert (result.counts.sum(axis=1) == _pixels_per_prototype(a, 8)).all()
    assert len(result.matching()) <= 5
    assert 0.0 <= result.agreement()["nmi"] <= 1.0
    itself = correspondence(a, a, progress=False)
    present = itself.counts.sum(axis=1) > 0
    assert np.array_equal(np.diag(itself.counts), itself.counts.sum(axis=1))  # diagonal only
    assert itself.agreement()["nmi"] == pytest.approx(1.0)
    assert len(itself.matching()) == present.sum()


def _pixels_per_prototype(index, k: int) -> np.ndarray:
    total = np.zeros(k, dtype=np.int64)
    for image_id in index.image_ids():
        total += np.bincount(index.assignment(image_id).ravel(), minlength=k)
    return total


def _cli(capsys, *args) -> tuple[int, str, str]:
    """`python -m indexing compare ...` in this process (a subprocess would spend minutes
    importing torch on a loaded 2-core machine): (exit status, stdout, stderr)."""
    from indexing.cli import main

    try:
        status = main(["compare", *map(str, args)])
    except SystemExit as exit:  # bad arguments (argparse)
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def test_command_line_writes_and_prints(two_indexes, tmp_path, capsys):
    out = tmp_path / "cmp"
    status, stdout, stderr = _cli(
        capsys, "--index", two_indexes["a"], "--index", two_indexes["b"], "--out", out
    )
    assert status == 0, stderr
    assert "K_A = 8" in stdout and "K_B = 5" in stdout and "NMI" in stdout
    info = json.loads((out / "summary.json").read_text())
    assert info["shape"] == [8, 5] and info["images"] == 32
    assert info["index_b"]["num_prototypes"] == 5
    again = _cli(capsys, "--index", two_indexes["a"], "--index", two_indexes["b"], "--out", out)
    assert again[0] == 0, again[2]  # its own earlier output may be replaced


def test_command_line_refusals(two_indexes, tmp_path, capsys):
    status, _, stderr = _cli(capsys, "--index", two_indexes["a"], "--index", two_indexes["subset"])
    assert status == 1
    assert "4 images differ (4 only in A, 0 only in B, 28 in both" in stderr
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    status, _, stderr = _cli(
        capsys, "--index", two_indexes["a"], "--index", two_indexes["b"], "--out", foreign
    )
    assert status == 1 and "not replacing" in stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
    status, _, stderr = _cli(capsys, "--index", two_indexes["a"])
    assert status == 1 and "exactly twice" in stderr
