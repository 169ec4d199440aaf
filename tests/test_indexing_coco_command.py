"""`python -m indexing coco` end to end against a local server on 127.0.0.1 (no network):
disk space refused before any download, a second run doing nothing, the checkpoint (missing,
foreign, by URL), and the whole chain to an index whose evaluation runs with no further flags
than the index and the checkpoint."""

from __future__ import annotations

import json

import pytest
from conftest import save_random_encoder
from test_indexing_coco_fakes import FakeServer, coco_archives, image_names, serving, table_for

import indexing.coco.setup as coco_setup
from indexing.cli import main
from indexing.coco.config import CocoConfig
from indexing.coco.setup import AUTHORS_MODELS, prepare_data

# pycocotools' mask decoding under numpy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
FILES = coco_archives(4)
HALF = len(FILES["val2017.zip"]) // 2


def _run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def official(monkeypatch):
    """The test's table in place of the real one, with unreachable "official" URLs (.invalid
    never resolves): only --mirror, the local server, is ever asked."""
    table = table_for(FILES, "http://coco.invalid/zips", 4)
    monkeypatch.setattr(coco_setup, "COCO_VAL_ARCHIVES", table)
    return table


def test_not_enough_disk_is_refused_before_any_download(tmp_path, official, monkeypatch, capsys):
    monkeypatch.setattr(coco_setup, "free_bytes", lambda path: 1_000_000)
    with serving(FakeServer(FILES)) as fake:
        status, _, err = _run(capsys, "coco", "--root", tmp_path / "coco", "--mirror", fake.url)
    assert status == 1 and fake.requests == []
    assert "error: not enough disk space" in err and str(tmp_path / "coco") in err
    assert "only 0.00 GB is free" in err and "nothing was downloaded" in err
    assert "Traceback" not in err and not (tmp_path / "coco" / "downloads").exists()


def test_without_checkpoint_the_data_are_prepared_and_the_model_explained(
    tmp_path, official, capsys
) -> None:
    root = tmp_path / "coco"
    with serving(FakeServer(FILES)) as fake:
        status, out, err = _run(capsys, "coco", "--root", root, "--mirror", fake.url)
        assert status == 1 and AUTHORS_MODELS in err and "full ckpt" in err
        assert f"python -m indexing coco --root {root} --checkpoint" in err
        assert len(list((root / "val2017").glob("*.jpg"))) == 4
        assert (root / "annotations" / "instances_val2017.json").is_file()
        assert len(list((root / "stuffthingmaps" / "val2017").glob("*.png"))) == 4
        assert not (root / "stuffthingmaps" / "train2017").exists()  # only val2017 unpacked
        assert not list((root / "downloads").iterdir())  # zips removed once unpacked
        served = len(fake.requests)
        said = []  # a second run: nothing downloaded, nothing unpacked again
        prepare_data(CocoConfig(root=root, mirror=fake.url), say=said.append)
    assert len(fake.requests) == served == 3
    assert len(said) == 3 and all("already verified and unpacked" in line for line in said)


def test_foreign_checkpoint_is_refused_before_any_download(tmp_path, official, capsys) -> None:
    foreign = tmp_path / "model.pth"
    foreign.write_bytes(b"not a checkpoint")
    with serving(FakeServer(FILES)) as fake:
        status, _, err = _run(capsys, "coco", "--root", tmp_path / "coco", "--mirror", fake.url,
                              "--checkpoint", foreign)  # fmt: skip
    assert status == 1 and fake.requests == [] and "model.pth" in err


@pytest.mark.slow
def test_whole_chain_to_an_index_whose_evaluation_runs(tmp_path, official, capsys) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, data in FILES.items():  # the encoder's prototypes spread over the images
        (tmp_path / name).write_bytes(data)
    import zipfile

    with zipfile.ZipFile(tmp_path / "val2017.zip") as zf:
        zf.extractall(photos)
    checkpoint = save_random_encoder(
        tmp_path / "encoder.pt", 0, sorted((photos / "val2017").glob("*.jpg"))
    )
    root, out = tmp_path / "data" / "coco", tmp_path / "data" / "index-coco"
    files = {**FILES, "encoder.pt": checkpoint.read_bytes()}
    common = ["--root", root, "--device", "cpu", "--workers", "0", "--size", "64",
              "--batch-size", "2", "--probe-batches", "1"]  # fmt: skip
    with serving(FakeServer(files, drops={"val2017.zip": HALF})) as fake:
        status, text, err = _run(capsys, "coco", *common, "--mirror", fake.url,
                                 "--checkpoint", f"{fake.url}/encoder.pt")  # fmt: skip
        assert status == 0, err
        assert ("val2017.zip", f"bytes={HALF}-") in fake.requests  # the drop was resumed
        assert "measured" in text and "images/s on cpu" in text and "expected build time" in text
        (downloaded,) = (root / "checkpoints").glob("*-encoder.pt")
        assert f"python app.py --index {out} --checkpoint {downloaded}" in text
        recorded = (root / "checkpoints" / "last-checkpoint.txt").read_text().strip()
        assert recorded == str(downloaded.absolute())  # what `make coco` starts the app with
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["counts"]["images"] == 4 and manifest["annotations"]
        assert (out / "evaluation.json").is_file()  # purity and the Evaluation tab
        served = len(fake.requests)
        status, text, err = _run(capsys, "coco", *common, "--mirror", fake.url,
                                 "--checkpoint", f"{fake.url}/encoder.pt")  # fmt: skip
        assert status == 0, err
        assert len(fake.requests) == served and "is up to date" in text  # did nothing
    scores = tmp_path / "scores.json"
    status, text, err = _run(capsys, "evaluate", "--index", out, "--protocol", "cocostuff27",
                             "--checkpoint", downloaded, "--out-json", scores)  # fmt: skip
    assert status == 0, err
    result = json.loads(scores.read_text())
    assert result["images_evaluated"] == 4 and result["images_missing"] == 2175 - 4
    assert 0 < result["hungarian"]["pixel_accuracy"] <= 1
    assert set(image_names(4)) <= {p.stem for p in (root / "val2017").glob("*.jpg")}
    status, _, err = _run(capsys, "evaluate", "--index", out)  # the build's instances JSON
    assert status == 0, err


def test_checkpoint_url_that_gives_a_web_page_is_refused(tmp_path, official, capsys) -> None:
    root = tmp_path / "coco"
    files = {**FILES, "share": b"<!DOCTYPE html><html>OneDrive</html>"}
    with serving(FakeServer(files)) as fake:
        status, _, err = _run(capsys, "coco", "--root", root, "--mirror", fake.url,
                              "--checkpoint", f"{fake.url}/share?e=abc")  # fmt: skip
    assert status == 1 and "did not give a SlotCon checkpoint" in err and "browser" in err
    assert len(list((root / "checkpoints").glob("*-share.rejected"))) == 1
    assert not list((root / "checkpoints").glob("*-share"))


def test_partial_build_of_another_checkpoint_is_built_again(tmp_path, official) -> None:
    from indexing.coco.index import build_coco_index
    from indexing.store.directory import partial_dir

    root, out = tmp_path / "coco", tmp_path / "index-coco"
    (root / "downloads").mkdir(parents=True)
    for archive in official:
        (root / "downloads" / archive.filename).write_bytes(FILES[archive.filename])
    cfg = CocoConfig(root=root, out=out, device="cpu", workers=0, size=64, batch_size=2,
                     probe_batches=0)  # fmt: skip
    prepare_data(cfg, say=[].append)
    images = sorted((root / "val2017").glob("*.jpg"))
    new = save_random_encoder(tmp_path / "new.pt", 2, images)
    partial_dir(out).mkdir()  # an interrupted run with another model
    (partial_dir(out) / "build.json").write_text(json.dumps({"checkpoint_sha256": "0" * 64}))
    (partial_dir(out) / "chunks").mkdir()
    said = []
    assert build_coco_index(cfg, new, say=said.append) == out
    assert any("was made with other settings; building again from zero" in s for s in said)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["images"] == 4 and not partial_dir(out).exists()


def test_checkpoint_urls_with_the_same_file_name_are_two_files(tmp_path) -> None:
    from indexing.coco.setup import resolve_checkpoint

    files = {"download": save_random_encoder(tmp_path / "encoder.pt", 0).read_bytes()}
    with serving(FakeServer(files)) as fake:
        paths = [
            resolve_checkpoint(CocoConfig(root=tmp_path / "coco", checkpoint=url), say=[].append)
            for url in (f"{fake.url}/a/download?e=1", f"{fake.url}/b/download?e=1")
        ]
        assert len(fake.requests) == 2  # the second link is not taken for the first one's file
    assert paths[0] != paths[1] and all(p.is_file() for p in paths)
    assert all(p.parent == tmp_path / "coco" / "checkpoints" for p in paths)
    assert all(p.name.endswith("-download") and len(p.name) == 12 + 9 for p in paths)
