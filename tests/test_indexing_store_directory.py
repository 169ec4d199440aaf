"""Damaged or moved indexes: every defect is an IndexFormatError that says what is wrong and what
to do, in the library, in `python -m indexing evaluate` and in `python app.py`; never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import app
import explorer
from indexing import ConceptIndex, IndexFormatError
from indexing.cli import main
from indexing.store.directory import labels_path

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture()
def copy(indexing_data, tmp_path) -> Path:
    """A copy of the session's index, free to damage."""
    root = tmp_path / "index"
    shutil.copytree(indexing_data["index"], root)
    return root


def _edit_manifest(root: Path, change) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


MANIFEST_DEFECTS = {
    "no model": (lambda m: m.pop("model"), "'model' is missing"),
    "model null": (lambda m: m.update(model=None), "'model' is null"),
    "model a list": (lambda m: m.update(model=[8]), "'model' is a list"),
    "no K": (lambda m: m["model"].pop("num_prototypes"), "'model.num_prototypes' is missing"),
    "K a string": (lambda m: m["model"].update(num_prototypes="8"), "'model.num_prototypes'"),
    "K zero": (lambda m: m["model"].update(num_prototypes=0), "'model.num_prototypes'"),
    "no D": (lambda m: m["model"].pop("dim"), "'model.dim' is missing"),
    "no input size": (lambda m: m["model"].pop("input_size"), "'model.input_size'"),
    "no checkpoint": (lambda m: m.pop("checkpoint"), "'checkpoint' is missing"),
    "checkpoint null": (lambda m: m.update(checkpoint=None), "'checkpoint' is null"),
    "no checkpoint hash": (lambda m: m["checkpoint"].pop("sha256"), "'checkpoint.sha256'"),
    "no image root": (lambda m: m.pop("image_root"), "'image_root' is missing"),
    "image root null": (lambda m: m.update(image_root=None), "'image_root' is null"),
    "faiss null": (lambda m: m.update(faiss=None), "'faiss' is null"),
    "class names a string": (lambda m: m.update(class_names="cat"), "'class_names'"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_DEFECTS))
def test_damaged_manifest_is_a_clear_error(copy, case) -> None:
    change, message = MANIFEST_DEFECTS[case]
    _edit_manifest(copy, change)
    with pytest.raises(IndexFormatError, match=message) as caught:
        ConceptIndex.open(copy)
    assert "manifest.json" in str(caught.value) and "python -m indexing build" in str(caught.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["model"].update(num_prototypes=9), "K = 9"),
        (lambda m: m["model"].update(num_prototypes=4), "K = 4"),
        (lambda m: m["model"].update(dim=8), "D = 8"),
    ],
)
def test_manifest_that_disagrees_with_the_vectors_is_refused(copy, change, message) -> None:
    _edit_manifest(copy, change)
    with pytest.raises(IndexFormatError, match=message) as caught:
        ConceptIndex.open(copy)
    assert "python -m indexing build" in str(caught.value)


def test_prototype_vectors_of_another_k_are_refused(copy) -> None:
    vectors = np.load(copy / "prototypes.npy")
    np.save(copy / "prototypes.npy", np.concatenate([vectors, vectors[:1]]))
    with pytest.raises(IndexFormatError, match="prototypes.npy"):
        ConceptIndex.open(copy)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        '{"format": "slotcon-explorer-labels", "version": 1, "checkpoints": []}',
        '{"format": "slotcon-explorer-labels", "version": 1, "checkpoints": {"%s": {"x": "a"}}}',
        '{"format": "slotcon-explorer-labels", "version": 1, "checkpoints": {"%s": ["a"]}}',
    ],
)
def test_corrupt_labels_file_is_refused_at_open(copy, content) -> None:
    sha = json.loads((copy / "manifest.json").read_text())["checkpoint"]["sha256"]
    path = labels_path(copy)
    path.write_text(content.replace("%s", sha))
    with pytest.raises(IndexFormatError, match="labels.json") as caught:
        ConceptIndex.open(copy)
    assert "move it away" in str(caught.value)
    assert path.read_text() == content.replace("%s", sha)  # left for the user to repair


# ---------------------------------------------------------------- a moved image folder


@pytest.fixture()
def moved(indexing_data, copy, tmp_path) -> tuple[Path, Path]:
    """(index whose image root no longer exists, the folder the images moved to)."""
    new_root = tmp_path / "moved-images"
    shutil.copytree(indexing_data["images"], new_root)
    _edit_manifest(copy, lambda m: m.update(image_root=str(tmp_path / "gone")))
    return copy, new_root


def test_missing_image_root_names_the_way_out(moved) -> None:
    index, new_root = moved
    with pytest.raises(IndexFormatError, match="--image-root"):
        ConceptIndex.open(index)
    relocated = ConceptIndex.open(index, image_root=new_root)
    assert relocated.image_root == new_root.absolute()
    record = relocated.image(relocated.image_ids()[0])
    assert record.path.parent == new_root.absolute() and record.path.is_file()
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ConceptIndex.open(index, image_root=new_root / "nowhere")
    empty = new_root.parent / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="does not hold the index's images"):
        ConceptIndex.open(index, image_root=empty)


def _cli(capsys, *argv) -> tuple[int, str]:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit:  # bad arguments (argparse)
        status = exit.code
    return status, capsys.readouterr().err


def test_evaluate_damaged_and_moved_indexes(copy, moved, capsys) -> None:
    index, new_root = moved
    status, err = _cli(capsys, "evaluate", "--index", index)
    assert status == 1 and "--image-root" in err and "Traceback" not in err, err
    assert _cli(capsys, "evaluate", "--index", index, "--image-root", new_root)[0] == 0
    _edit_manifest(index, lambda m: m.pop("model"))
    status, err = _cli(capsys, "evaluate", "--index", index, "--image-root", new_root)
    assert status == 1 and "'model' is missing" in err and err != "error: model\n", err


def test_app_damaged_and_moved_indexes(moved, capsys, monkeypatch) -> None:
    index, new_root = moved
    args = ["--index", str(index)]
    assert app.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--image-root" in err, err

    class Opened(Exception):
        pass

    def stop(ctx, comparison=None, timeline=None):
        raise Opened(ctx)

    monkeypatch.setattr(explorer, "build_app", stop)  # stop before the server starts
    cache = new_root.parent / "cache"
    argv = ["--index", index, "--image-root", new_root, "--cache", cache]
    args = [str(a) for a in argv]
    with pytest.raises(Opened) as opened:
        app.main(args)
    assert opened.value.args[0].index.image_root == new_root.absolute()
    labels_path(index).write_text("{not json")
    assert app.main(args) == 1
    assert "labels.json" in capsys.readouterr().err
    _edit_manifest(index, lambda m: m.update(model=None))
    assert app.main(args) == 1
    assert "'model' is null" in capsys.readouterr().err
