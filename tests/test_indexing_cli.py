"""python -m indexing: help, evaluate (both protocols) against the library, figure, errors."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from indexing import ConceptIndex
from indexing.build.config import BuildConfig
from indexing.cli import build_parser, main
from indexing.figure import figure_size, mask_overlay
from indexing.scores.cocostuff import COCOSTUFF27_CLASSES, COCOSTUFF_CATEGORIES
from indexing.scores.groundtruth import CocoLabels
from indexing.scores.metrics import ConfusionAccumulator, hungarian_scores, majority_vote_scores
from model.checkpoint import load_encoder
from model.data import load_rgb
from model.flags import add_config_flags, config_from_args
from model.transforms import assign_pixels

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    """main() in this process: (exit status, stdout, stderr)."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit:  # bad arguments (argparse)
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "command, options",
    [
        ("build", ["--checkpoint", "--images", "--annotations", "--resume", "--index-type"]),
        ("build", ["--precision", "--authors-crop"]),
        (
            "evaluate",
            ["--index", "--protocol", "--out-json", "--out-csv", "--stuffthing-dir", "--precision"],
        ),
        ("figure", ["--index", "--out", "--prototypes", "--k", "--sample", "--seed"]),
    ],
)
def test_help(capsys, command: str, options: list[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([command, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert all(option in text for option in options)


def test_build_flags_are_the_config_fields(tmp_path, capsys) -> None:
    """Every BuildConfig field is a flag of `indexing build` with the field's default and help;
    the flags come back as the same config; a value the config refuses is a bad argument."""
    parser = build_parser()
    required = ["--checkpoint", "c.pt", "--images", "imgs", "--out", "idx"]
    args = parser.parse_args(["build", *required])
    assert config_from_args(BuildConfig, args) == BuildConfig(
        Path("c.pt"), Path("imgs"), Path("idx")
    )
    build = parser._subparsers._group_actions[0].choices["build"]
    flags = {a.dest: a for a in build._actions if a.dest != "help"}
    assert list(flags) == [f.name for f in dataclasses.fields(BuildConfig)]
    for f in dataclasses.fields(BuildConfig):
        assert flags[f.name].help.startswith(f.metadata["help"])
    given = parser.parse_args(
        ["build", *required, "--annotations", "a.json", "b.json", "--size", "96", "--resume",
         "--index-type", "ivf", "--authors-crop", "--batch-size", "3", "--precision", "bf16"]
    )  # fmt: skip
    cfg = config_from_args(BuildConfig, given)
    assert cfg.annotations == (Path("a.json"), Path("b.json")) and cfg.size == 96
    assert cfg.resume and cfg.authors_crop and cfg.index_type == "ivf" and cfg.batch_size == 3
    assert cfg.precision == "bf16" and cfg.chunk_size == 256
    status, _, err = _run(capsys, "build", *required, "--size", "8")
    assert status == 2 and "size must be at least 16 px" in err
    status, _, err = _run(capsys, "build", *required, "--precision", "fp16")
    assert status == 2 and "precision must be one of" in err


@dataclasses.dataclass(frozen=True)
class _Toy:
    name: str = dataclasses.field(metadata={"help": "required"})
    sizes: tuple[int, ...] = dataclasses.field(default=(1,), metadata={"help": "some ints"})
    rate: float | None = dataclasses.field(default=None, metadata={"help": "optional"})
    fast: bool = dataclasses.field(default=True, metadata={"help": "on by default"})


def test_config_flags_of_any_dataclass() -> None:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, _Toy)
    assert config_from_args(_Toy, parser.parse_args(["--name", "a"])) == _Toy("a")
    args = parser.parse_args(["--name", "b", "--sizes", "2", "3", "--rate", "0.5", "--no-fast"])
    assert config_from_args(_Toy, args) == _Toy("b", (2, 3), 0.5, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--sizes", "2"])  # --name is required


def test_evaluate_gives_the_library_numbers(indexing_data, tmp_path, capsys) -> None:
    out_json, out_csv = tmp_path / "scores.json", tmp_path / "scores.csv"
    status, out, err = _run(
        capsys, "evaluate", "--index", indexing_data["index"], "--out-json", out_json,
        "--out-csv", out_csv,
    )  # fmt: skip
    assert status == 0, err
    result = json.loads(out_json.read_text())
    index = ConceptIndex.open(indexing_data["index"])
    labels = CocoLabels(indexing_data["annotations"])
    acc = ConfusionAccumulator(index.num_prototypes, labels.num_classes)
    images = pd.read_feather(index.root / "images.arrow").set_index("image_id")
    for image_id in index.image_ids():  # the maps straight from the PNGs in the shards
        row = images.loc[image_id]
        with open(index.root / "assignments" / f"{row.map_shard:05d}.bin", "rb") as shard:
            shard.seek(row.map_offset)
            png = io.BytesIO(shard.read(row.map_length))
        with Image.open(png) as png:
            acc.update(np.asarray(png), labels.label_map(image_id))
    names, things = labels.class_names, labels.class_is_thing
    hungarian = hungarian_scores(acc.counts, np.load(index.root / "prototypes.npy"))
    assert result["hungarian"] == hungarian.to_dict(names, things)
    assert result["majority"] == majority_vote_scores(acc.counts).to_dict(names, things)
    assert result["images_evaluated"] == 32
    assert result["hungarian"] == index.evaluation()["hungarian"]  # the build's own scores
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["mapping", "mIoU"]
    assert lines[1].split()[:3] == [
        "hungarian", f"{100 * hungarian.miou:.2f}", f"{100 * hungarian.pixel_accuracy:.2f}",
    ]  # fmt: skip
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["class"] for r in rows] == names
    for row, iou in zip(rows, hungarian.per_class_iou):
        assert row["hungarian_iou"] == ("" if np.isnan(iou) else f"{iou:.6f}")


def _coco_ids_json(annotations: Path, target: Path) -> Path:
    """The scenes' JSON with COCO-Stuff category ids (things -> COCO things, stuff -> stuff)."""
    by_name = {name: cid for cid, (name, _) in COCOSTUFF_CATEGORIES.items()}
    coco_names = [
        "person", "car", "dog", "bottle", "chair", "tv", "book", "banana", "backpack",
        "frisbee", "microwave", "traffic light", "sky-other", "grass", "wall-brick", "sea", "sand",
    ]  # fmt: skip
    data = json.loads(annotations.read_text())
    new_id = {cat["id"]: by_name[coco_names[i]] for i, cat in enumerate(data["categories"])}
    for cat in data["categories"]:
        cat["id"] = new_id[cat["id"]]
    for ann in data["annotations"]:
        ann["category_id"] = new_id[ann["category_id"]]
    target.write_text(json.dumps(data))
    return target


def test_evaluate_cocostuff27_protocol(indexing_data, tmp_path, capsys) -> None:
    annotations = _coco_ids_json(indexing_data["annotations"], tmp_path / "coco_ids.json")
    curated = tmp_path / "curated.txt"
    curated.write_text("000000000003\n000000000010\n000000000999\n")  # the last is not indexed
    out_json = tmp_path / "cs27.json"
    status, out, err = _run(
        capsys, "evaluate", "--index", indexing_data["index"], "--protocol", "cocostuff27",
        "--checkpoint", indexing_data["checkpoint"], "--annotations", annotations,
        "--curated", curated, "--device", "cpu", "--out-json", out_json,
    )  # fmt: skip
    assert status == 0, err
    result = json.loads(out_json.read_text())
    assert result["images_evaluated"] == 2 and result["images_missing"] == 1
    assert result["class_names"] == list(COCOSTUFF27_CLASSES)
    # by hand: 64 px scenes -> 320 x 320 (shorter side 320, the centre crop is all of it)
    encoder = load_encoder(indexing_data["checkpoint"], "cpu")
    labels = CocoLabels(annotations, coarse=True)
    acc = ConfusionAccumulator(8, 27)
    for image_id in (3, 10):
        image = load_rgb(indexing_data["images"] / f"{image_id:012d}.jpg")
        image = image.resize((320, 320), Image.Resampling.BILINEAR)
        x, info = encoder.preprocess(image, 320)
        assert tuple(x.shape[-2:]) == (320, 320)
        dots = encoder(x, torch.ones(1, 1, 20, 20, dtype=torch.bool)).dots[0]
        assignment, _, _ = assign_pixels(dots, info, encoder.stride)
        label_map = Image.fromarray(labels.label_map(image_id)).resize(
            (320, 320), Image.Resampling.NEAREST
        )
        acc.update(assignment, np.asarray(label_map))
    names, things = labels.class_names, labels.class_is_thing
    hungarian = hungarian_scores(acc.counts, encoder.prototypes.numpy())
    assert result["hungarian"] == hungarian.to_dict(names, things)
    assert result["majority"] == majority_vote_scores(acc.counts).to_dict(names, things)
    assert "things mIoU" in out
    # PiCIE's clustering of pixel features is reported beside them; fp32, PiCIE's 320 / 320
    assert "picie" in out and 0 <= result["picie"]["miou"] <= 1
    assert len(result["picie"]["mapping"]) == 27
    assert result["view"] == {"resize": 320, "crop": 320} and result["precision"] == "fp32"
    status, out, err = _run(
        capsys, "evaluate", "--index", indexing_data["index"], "--protocol", "cocostuff27",
        "--checkpoint", indexing_data["checkpoint"], "--annotations", annotations,
        "--curated", curated, "--device", "cpu", "--out-json", out_json, "--authors-crop",
        "--precision", "bf16", "--out-csv", tmp_path / "cs27.csv",
    )  # fmt: skip
    assert status == 0, err
    result = json.loads(out_json.read_text())
    assert result["view"] == {"resize": 256, "crop": 224} and result["precision"] == "bf16"
    with open(tmp_path / "cs27.csv") as f:
        header = next(csv.reader(f))
    assert header == ["class", "is_thing", "picie_iou", "hungarian_iou", "majority_iou"]


def test_figure(indexing_data, tmp_path, capsys) -> None:
    out = tmp_path / "figure.png"
    status, _, err = _run(
        capsys, "figure", "--index", indexing_data["index"], "--out", out, "--prototypes", 1, 3,
        5, "--k", 4, "--cell", 48,
    )  # fmt: skip
    assert status == 0, err
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == figure_size(3, 4, 48)
    status, _, err = _run(
        capsys, "figure", "--index", indexing_data["index"], "--out", out, "--sample", 2
    )
    assert status == 0, err
    with Image.open(out) as png:
        assert png.size == figure_size(2, 5, 128)


def test_mask_overlay_by_hand() -> None:
    image = np.full((1, 2, 3), 255, dtype=np.uint8)
    blended = mask_overlay(image, np.array([[True, False]]))
    np.testing.assert_array_equal(blended, [[[255, 102, 102], [255, 255, 255]]])


def test_clear_errors(indexing_data, tmp_path, capsys) -> None:
    images = indexing_data["images"]
    cases = [
        (["build", "--checkpoint", tmp_path / "missing.pt", "--images", images, "--out",
          tmp_path / "a"], "checkpoint not found"),
        (["build", "--checkpoint", indexing_data["checkpoint"], "--images", tmp_path, "--out",
          tmp_path / "b"], "no images"),
        (["evaluate", "--index", indexing_data["index"], "--checkpoint",
          indexing_data["other_checkpoint"]], "built with another checkpoint"),
        (["evaluate", "--index", images], "is not an index"),
        (["figure", "--index", indexing_data["index"], "--out", tmp_path / "f.png",
          "--prototypes", 99], "unknown prototype 99"),
    ]  # fmt: skip
    for argv, message in cases:
        status, _, err = _run(capsys, *argv)
        assert status == 1 and err.startswith("error: ") and message in err, err
        assert "Traceback" not in err


def test_command_line_process_exits_cleanly(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "indexing", "build", "--checkpoint", str(tmp_path / "x.pt"),
         "--images", str(tmp_path), "--out", str(tmp_path / "i")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: checkpoint not found") or "error: no images" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
