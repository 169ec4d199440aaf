"""Commands that write a directory replace or continue only what they wrote themselves.

Each command line (indexing build, model.scenes, model.train) is run through its main() against
a folder holding a user's file: refused with a message, before any work, the file unchanged.
An earlier output of the same command is still replaced (or continued).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from indexing.build import pipeline as build_module
from indexing.cli import main as indexing_main
from indexing.store.directory import partial_dir
from model import scenes
from model.outdir import OutputDirError, check_output_dir, is_run_dir
from model.train import main as train_main

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
USER_BYTES = b"my thesis, chapter 3\n\x00\xff"


def _user_folder(path: Path) -> Path:
    """A folder with a user's file (and a subfolder) in it."""
    (path / "notes").mkdir(parents=True)
    (path / "thesis.txt").write_bytes(USER_BYTES)
    (path / "notes" / "todo.md").write_bytes(b"- back up\n")
    return path


def _assert_untouched(path: Path) -> None:
    assert (path / "thesis.txt").read_bytes() == USER_BYTES
    assert (path / "notes" / "todo.md").read_bytes() == b"- back up\n"
    assert sorted(p.name for p in path.iterdir()) == ["notes", "thesis.txt"]


# ---------------------------------------------------------------- the rule


def test_check_output_dir_accepts_absent_empty_and_recognised(tmp_path) -> None:
    check_output_dir(tmp_path / "new", lambda p: False, "x")
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", lambda p: False, "x")
    check_output_dir(_user_folder(tmp_path / "mine"), lambda p: True, "x")


def test_check_output_dir_refuses_files_and_foreign_folders(tmp_path) -> None:
    folder = _user_folder(tmp_path / "user")
    with pytest.raises(OutputDirError, match="not an index") as caught:
        check_output_dir(folder, lambda p: False, "an index")
    assert "--out" in str(caught.value)
    assert isinstance(caught.value, FileExistsError) and isinstance(caught.value, ValueError)
    (tmp_path / "file").write_bytes(USER_BYTES)
    with pytest.raises(OutputDirError, match="not a directory"):
        check_output_dir(tmp_path / "file", lambda p: True, "an index")
    _assert_untouched(folder)
    assert (tmp_path / "file").read_bytes() == USER_BYTES


# ---------------------------------------------------------------- python -m indexing build


def _index_run(capsys, *argv) -> tuple[int, str]:
    try:
        status = indexing_main([str(a) for a in argv])
    except SystemExit as exit:  # bad arguments (argparse)
        status = exit.code
    return status, capsys.readouterr().err


@pytest.fixture()
def few_images(indexing_data, tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for source in sorted(indexing_data["images"].glob("*.jpg"))[:3]:
        shutil.copy(source, folder / source.name)
    return folder


def _build_argv(indexing_data, images: Path, out: Path) -> list:
    return ["build", "--checkpoint", indexing_data["checkpoint"], "--images", images, "--out",
            out, "--size", 64, "--workers", 0, "--device", "cpu"]  # fmt: skip


def test_build_refuses_a_user_folder_before_any_work(
    indexing_data, few_images, tmp_path, capsys, monkeypatch
) -> None:
    def no_work(*args, **kwargs):
        raise AssertionError("the build started working")

    monkeypatch.setattr(build_module, "load_encoder", no_work)
    monkeypatch.setattr(build_module, "list_collection", no_work)
    folder = _user_folder(tmp_path / "out")
    status, err = _index_run(capsys, *_build_argv(indexing_data, few_images, folder))
    assert status == 1 and err.startswith("error: ") and "not an index" in err, err
    assert "Traceback" not in err
    _assert_untouched(folder)
    assert not partial_dir(folder).exists()
    file = tmp_path / "index.txt"
    file.write_bytes(USER_BYTES)
    status, err = _index_run(capsys, *_build_argv(indexing_data, few_images, file))
    assert status == 1 and "not a directory" in err, err
    assert file.read_bytes() == USER_BYTES and not partial_dir(file).exists()


def test_build_refuses_a_user_folder_at_the_partial_path(
    indexing_data, few_images, tmp_path, capsys
) -> None:
    folder = _user_folder(partial_dir(tmp_path / "out"))
    status, err = _index_run(capsys, *_build_argv(indexing_data, few_images, tmp_path / "out"))
    assert status == 1 and "partial build" in err, err
    _assert_untouched(folder)
    assert not (tmp_path / "out").exists()


def test_build_into_an_empty_folder_then_over_its_own_index(
    indexing_data, few_images, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert _index_run(capsys, *_build_argv(indexing_data, few_images, out))[0] == 0
    first = json.loads((out / "manifest.json").read_text())["build"]["finished"]
    (out / "marker").write_text("from the first build")
    assert _index_run(capsys, *_build_argv(indexing_data, few_images, out))[0] == 0
    assert not (out / "marker").exists()  # replaced as a whole
    assert json.loads((out / "manifest.json").read_text())["counts"]["images"] == 3
    assert first


# ---------------------------------------------------------------- python -m model.scenes


def _scenes(tmp_path_out: Path, *extra: str) -> None:
    argv = ["--out", str(tmp_path_out), "--images", "2", "--size", "32", "--workers", "1"]
    assert scenes.main(argv + list(extra)) == 0


def test_scenes_refuse_a_user_folder(tmp_path, capsys) -> None:
    folder = _user_folder(tmp_path / "photos")
    with pytest.raises(SystemExit) as exit:
        _scenes(folder)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "not a scenes data set" in err and "Traceback" not in err, err
    _assert_untouched(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]  # no staging directory left


def test_scenes_fill_an_empty_folder_add_a_split_and_replace_their_own(tmp_path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    _scenes(out)
    _scenes(out, "--split", "val", "--seed", "1")  # a second split beside the first
    _scenes(out, "--seed", "2")  # other parameters replace the train split
    data = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert data["info"]["scenes"]["seed"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["annotations", "train", "val"]


def test_scenes_continue_after_a_killed_write_into_an_empty_folder(tmp_path) -> None:
    out = tmp_path / "ds"
    (out / ".ds.train.tmp-123-abcd" / "train").mkdir(parents=True)  # left by kill -9
    _scenes(out)
    assert scenes.find_complete(out, 2, 32, 0) is not None


# ---------------------------------------------------------------- python -m model.train


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-images")
    rng = np.random.default_rng(0)
    for i in range(8):
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((48, 48), Image.Resampling.BILINEAR).save(root / f"{i}.png")
    return root


def _train(images: Path, out: Path, *extra: str) -> int:
    torch.set_num_threads(1)
    argv = ["--preset", "tiny", "--data", str(images), "--out", str(out), "--device", "cpu"]
    return train_main(argv + ["--workers", "0", "--epochs", "1", *extra])


def test_train_refuses_a_user_folder(images, tmp_path, capsys) -> None:
    folder = _user_folder(tmp_path / "run")
    assert _train(images, folder) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a training run" in err, err
    _assert_untouched(folder)
    foreign_log = tmp_path / "other"  # a user's own log.jsonl would be truncated
    foreign_log.mkdir()
    (foreign_log / "log.jsonl").write_bytes(USER_BYTES)
    assert _train(images, foreign_log) == 1
    assert (foreign_log / "log.jsonl").read_bytes() == USER_BYTES
    assert not is_run_dir(foreign_log)


def test_train_continues_and_replaces_its_own_run(images, tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    assert _train(images, out) == 0
    assert is_run_dir(out)
    assert _train(images, out, "--epochs", "2") == 0  # resumes from last.pt
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [
        1,
        2,
    ]
    assert _train(images, out, "--no-resume") == 0  # starts again in the same run directory
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
