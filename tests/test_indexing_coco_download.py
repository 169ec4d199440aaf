"""indexing.coco.download against a local HTTP server: a whole file, a dropped transfer
resumed with Range (in the same call and in the next one), a server without Range support,
and network errors as one line with the partial file kept."""

from __future__ import annotations

import os

import pytest
from test_indexing_coco_fakes import FakeServer, serving

from indexing.coco.archives import REJECTED_SUFFIX
from indexing.coco.download import DownloadError, download, part_path

DATA = os.urandom(3_000_000)  # three read chunks and a bit


def _quiet(messages: list[str]):
    return messages.append


def test_complete_download(tmp_path) -> None:
    with serving(FakeServer({"f.zip": DATA})) as fake:
        dest = download(f"{fake.url}/f.zip", tmp_path / "f.zip", size=len(DATA), progress=False)
    assert dest.read_bytes() == DATA and not part_path(dest).exists()
    assert fake.requests == [("f.zip", None)]


def test_dropped_transfer_resumes_in_the_same_call(tmp_path) -> None:
    said: list[str] = []
    with serving(FakeServer({"f.zip": DATA}, drops={"f.zip": 1_234_567})) as fake:
        dest = download(f"{fake.url}/f.zip", tmp_path / "f.zip", len(DATA), retries=2,
                        say=_quiet(said), progress=False)  # fmt: skip
    assert dest.read_bytes() == DATA
    assert fake.requests == [("f.zip", None), ("f.zip", "bytes=1234567-")]
    assert any("connection lost at 1,234,567 bytes" in line for line in said)


def test_interrupted_download_keeps_the_part_and_the_next_run_resumes(tmp_path) -> None:
    dest = tmp_path / "f.zip"
    with serving(FakeServer({"f.zip": DATA}, drops={"f.zip": 1_000_000})) as fake:
        url = f"{fake.url}/f.zip"
        with pytest.raises(DownloadError) as error:
            download(url, dest, len(DATA), retries=0, progress=False)
        message = str(error.value)
        assert "\n" not in message and "run the same command again to resume" in message
        assert part_path(dest).stat().st_size == 1_000_000 and not dest.exists()
        download(url, dest, len(DATA), retries=0, progress=False)  # a later run
    assert dest.read_bytes() == DATA
    assert fake.requests[-1] == ("f.zip", "bytes=1000000-")


def test_killed_after_the_last_byte_needs_no_request(tmp_path) -> None:
    dest = tmp_path / "f.zip"
    part_path(dest).write_bytes(DATA)  # killed between the last write and the rename
    with serving(FakeServer({"f.zip": DATA})) as fake:
        download(f"{fake.url}/f.zip", dest, len(DATA), progress=False)
    assert dest.read_bytes() == DATA and fake.requests == []


def test_server_without_range_support_starts_over(tmp_path) -> None:
    dest, said = tmp_path / "f.zip", []
    part_path(dest).write_bytes(DATA[:500_000])  # left by an earlier, interrupted run
    with serving(FakeServer({"f.zip": DATA}, ranges=False)) as fake:
        download(f"{fake.url}/f.zip", dest, len(DATA), say=_quiet(said), progress=False)
    assert dest.read_bytes() == DATA
    assert fake.requests == [("f.zip", "bytes=500000-")]
    assert any("does not support resuming" in line and "from zero" in line for line in said)


def test_unknown_size_and_a_length_mismatch(tmp_path) -> None:
    with serving(FakeServer({"f.zip": DATA})) as fake:
        dest = download(f"{fake.url}/f.zip", tmp_path / "f.zip", size=None, progress=False)
        assert dest.read_bytes() == DATA
        with pytest.raises(DownloadError, match="the published size is 5"):
            download(f"{fake.url}/f.zip", tmp_path / "g.zip", size=5, progress=False)
    assert (tmp_path / ("g.zip" + REJECTED_SUFFIX)).is_file()
    assert not part_path(tmp_path / "g.zip").exists()


@pytest.mark.parametrize("where", ["missing file", "nobody listening"])
def test_network_errors_are_one_line(tmp_path, where) -> None:
    with serving(FakeServer({})) as fake:
        url = f"{fake.url}/none.zip"
    if where == "missing file":
        with serving(FakeServer({})) as fake:
            with pytest.raises(DownloadError, match="HTTP 404"):
                download(f"{fake.url}/none.zip", tmp_path / "x.zip", progress=False)
        return
    with pytest.raises(DownloadError) as error:  # the server above is closed: refused
        download(url, tmp_path / "x.zip", retries=1, say=_quiet([]), progress=False)
    assert "\n" not in str(error.value) and "stopped at 0 bytes" in str(error.value)


def test_http_error_says_what_to_do(tmp_path) -> None:
    with serving(FakeServer({})) as fake:
        with pytest.raises(DownloadError) as error:
            download(f"{fake.url}/gone.zip", tmp_path / "gone.zip", progress=False)
    assert "HTTP 404" in str(error.value) and "--mirror" in str(error.value)
