"""indexing.coco.archives (through prepare_data and a local server where a download is part of
it): a wrong checksum, a truncated or corrupt zip and unexpected members are refused with the
file kept aside and nothing unpacked; unpacking is atomic; folders not ours are not touched."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import pytest
from test_indexing_coco_fakes import FakeServer, coco_archives, serving, table_for

from indexing.coco import archives
from indexing.coco.archives import REJECTED_SUFFIX, UNPACKED_MARKER, ArchiveError
from indexing.coco.config import CocoConfig
from indexing.coco.setup import prepare_data

FILES = coco_archives(3)


def _prepare(root: Path, table, said=None) -> None:
    prepare_data(CocoConfig(root=root), table, say=(said if said is not None else []).append)


def _only(table, name: str):
    return tuple(a for a in table if a.name == name)


def test_wrong_checksum_is_refused_and_nothing_unpacked(tmp_path) -> None:
    with serving(FakeServer(FILES)) as fake:
        table = _only(table_for(FILES, fake.url, 3), "val2017")
        wrong = (dataclasses.replace(table[0], md5="0" * 32),)
        with pytest.raises(ArchiveError) as error:
            _prepare(tmp_path, wrong)
    message = str(error.value)
    assert "\n" not in message and "published MD5 is 000" in message
    assert "delete it and run the same command again" in message
    assert not (tmp_path / "val2017").exists()
    aside = tmp_path / "downloads" / ("val2017.zip" + REJECTED_SUFFIX)
    assert aside.read_bytes() == FILES["val2017.zip"]  # kept aside, not deleted


def test_truncated_zip_without_published_checksum_is_refused(tmp_path) -> None:
    name = "stuffthingmaps_trainval2017.zip"
    files = {name: FILES[name][: len(FILES[name]) // 2]}
    with serving(FakeServer(files)) as fake:
        table = _only(table_for(FILES, fake.url, 3), "stuffthingmaps")
        assert table[0].md5 is None and table[0].size is None  # as the real table
        with pytest.raises(ArchiveError, match="not a complete zip archive"):
            _prepare(tmp_path, table)
    assert not (tmp_path / "stuffthingmaps").exists()
    assert (tmp_path / "downloads" / (name + REJECTED_SUFFIX)).is_file()


def _rezip(data: bytes, change) -> bytes:
    """The zip `data` with its members passed through change(name, bytes) -> {name: bytes}."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            for name, body in change(info.filename, old.read(info)).items():
                new.writestr(name, body)
    return out.getvalue()


def test_corrupt_member_and_wrong_members_are_refused(tmp_path) -> None:
    name = "stuffthingmaps_trainval2017.zip"
    stored = _rezip(FILES[name], lambda n, b: {n: b})  # ZIP_STORED: bytes lie as they are
    first = zipfile.ZipFile(io.BytesIO(stored)).infolist()[0]
    at = first.header_offset + 30 + len(first.filename) + 10  # inside the first PNG's data
    corrupt = stored[:at] + bytes([stored[at] ^ 0xFF]) + stored[at + 1 :]
    missing = _rezip(FILES[name], lambda n, b: {} if n.endswith(".png") and "val" in n else {n: b})
    for data, why in [(corrupt, "not a complete zip archive"), (missing, "expected 3")]:
        root = tmp_path / why.replace(" ", "_")
        table = _only(table_for(FILES, "http://127.0.0.1:9", 3), "stuffthingmaps")
        (root / "downloads").mkdir(parents=True)
        (root / "downloads" / name).write_bytes(data)  # already downloaded: no request
        with pytest.raises(ArchiveError, match=why):
            _prepare(root, table)
        assert not (root / "stuffthingmaps").exists()


def test_member_leaving_the_target_is_refused(tmp_path) -> None:
    first = zipfile.ZipFile(io.BytesIO(FILES["val2017.zip"])).namelist()[0]
    evil = _rezip(
        FILES["val2017.zip"],
        lambda n, b: {n: b} if n != first else {n: b, "val2017/../../evil.jpg": b},
    )
    table = _only(table_for(FILES, "http://127.0.0.1:9", 3), "val2017")
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "val2017.zip").write_bytes(evil)
    table = (dataclasses.replace(table[0], size=None, md5=None),)
    with pytest.raises(ArchiveError, match="unsafe member path"):
        _prepare(tmp_path, table)
    assert not (tmp_path.parent / "evil.jpg").exists() and not (tmp_path / "val2017").exists()


def test_unpack_is_atomic_and_resumes_after_a_kill(tmp_path, monkeypatch) -> None:
    table = _only(table_for(FILES, "http://127.0.0.1:9", 3), "val2017")
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "val2017.zip").write_bytes(FILES["val2017.zip"])
    extract, calls = zipfile.ZipFile.extract, []

    def dies_on_the_second(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill in the middle of unpacking
        return extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        _prepare(tmp_path, table)
    assert not (tmp_path / "val2017").exists()  # half-unpacked is never taken as done
    assert (tmp_path / ".coco-staging-val2017" / archives.STAGING_MARKER).is_file()
    monkeypatch.setattr(zipfile.ZipFile, "extract", extract)
    _prepare(tmp_path, table)
    assert len(list((tmp_path / "val2017").glob("*.jpg"))) == 3
    assert (tmp_path / "val2017" / UNPACKED_MARKER).is_file()
    assert not (tmp_path / ".coco-staging-val2017").exists()
    assert not (tmp_path / "downloads" / "val2017.zip").exists()  # removed after the unpack


def test_folders_not_ours_are_left_alone(tmp_path) -> None:
    table = _only(table_for(FILES, "http://127.0.0.1:9", 3), "val2017")
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "val2017.zip").write_bytes(FILES["val2017.zip"])
    mine = tmp_path / "val2017" / "holiday.jpg"
    mine.parent.mkdir()
    mine.write_bytes(b"a user's file")
    with pytest.raises(ArchiveError, match="was not unpacked by this command"):
        _prepare(tmp_path, table)
    assert mine.read_bytes() == b"a user's file"
    staging = tmp_path / ".coco-staging-val2017"
    mine.unlink(), mine.parent.rmdir(), staging.mkdir()
    (staging / "notes.txt").write_text("not the program's")
    with pytest.raises(ArchiveError, match="is not this program's"):
        _prepare(tmp_path, table)
    assert (staging / "notes.txt").is_file()


def test_unpacking_again_removes_only_our_files(tmp_path) -> None:
    table = table_for(FILES, "http://127.0.0.1:9", 3)
    (tmp_path / "downloads").mkdir()
    for archive in table[:2]:
        (tmp_path / "downloads" / archive.filename).write_bytes(FILES[archive.filename])
    cfg = CocoConfig(root=tmp_path, keep_archives=True)
    prepare_data(cfg, table[:2], say=[].append)
    users = tmp_path / "annotations" / "stuff_val2017.json"
    users.write_text("the user's")
    photo = tmp_path / "val2017" / "holiday.jpg"
    photo.write_bytes(b"a user's file")
    for archive in table[:2]:  # an older unpack: the marker no longer matches, unpack again
        marker = tmp_path / archive.target / UNPACKED_MARKER
        marker.write_text(marker.read_text().replace(archive.md5, "0" * 32))
    prepare_data(cfg, table[1:2], say=[].append)
    assert archives.is_unpacked(tmp_path, table[1])  # the annotations were unpacked again
    assert users.read_text() == "the user's"
    assert (tmp_path / "annotations" / "instances_val2017.json").is_file()
    with pytest.raises(ArchiveError, match="holiday.jpg is in the way") as error:
        prepare_data(cfg, table[:1], say=[].append)
    assert "\n" not in str(error.value) and photo.read_bytes() == b"a user's file"
    assert len(list((tmp_path / "val2017").glob("*.jpg"))) == 4  # untouched: 3 + the user's


def test_foreign_folder_is_refused_before_any_request(tmp_path) -> None:
    mine = tmp_path / "stuffthingmaps" / "val2017" / "map.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"a user's file")
    with serving(FakeServer(FILES)) as fake:
        with pytest.raises(ArchiveError, match="was not unpacked by this command") as error:
            _prepare(tmp_path, table_for(FILES, fake.url, 3))
        assert fake.requests == []  # not even the archives before it
        assert "\n" not in str(error.value) and str(mine.parent) in str(error.value)
        mine.unlink(), mine.parent.rmdir()
        staging = tmp_path / ".coco-staging-annotations"
        staging.mkdir()
        with pytest.raises(ArchiveError, match="is not this program's"):
            _prepare(tmp_path, table_for(FILES, fake.url, 3))
        assert fake.requests == []
    assert mine.parent.parent.is_dir() and staging.is_dir()
    assert not (tmp_path / "downloads").exists() and not (tmp_path / "val2017").exists()
