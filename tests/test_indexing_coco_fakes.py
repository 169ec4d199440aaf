"""Test doubles of the COCO downloads (no network): small archives in the COCO layout and a
local HTTP server on 127.0.0.1 that can drop a transfer mid-way or ignore Range requests.
The helpers are imported by the other tests/test_indexing_coco_*.py; the tests here check
the doubles themselves (the archives are what pycocotools and the protocol read)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import urllib.request
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from indexing.coco.sources import Archive
from indexing.scores.protocol import read_curated

# pycocotools' mask decoding under numpy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
IMAGE_SIZE = (96, 64)  # W, H of the fake val2017 images
PERSON, CAR = 1, 3  # COCO category ids
SKY, GRASS = 157, 124  # COCO-Stuff ids of sky-other and grass (stuffthingmaps value = id - 1)


def image_names(n: int = 4) -> list[str]:
    """File stems of the fake images: the first curated COCO-Stuff-27 ids (so the protocol
    evaluates them)."""
    return read_curated()[:n]


def _scene(i: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(H, W, 3) uint8 image, (H, W) stuffthingmaps values, person box [x, y, w, h]."""
    W, H = IMAGE_SIZE
    rgb = np.zeros((H, W, 3), np.uint8)
    labels = np.full((H, W), 255, np.uint8)
    rgb[: H // 2], labels[: H // 2] = (90, 150, 230), SKY - 1
    rgb[H // 2 :], labels[H // 2 :] = (60, 160, 50), GRASS - 1
    x, y, w, h = 10 + 12 * i, 16, 24, 40
    rgb[y : y + h, x : x + w], labels[y : y + h, x : x + w] = (200, 60, 60), PERSON - 1
    return rgb, labels, [float(x), float(y), float(w), float(h)]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _png(array: np.ndarray, quality: int | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG" if quality else "PNG", quality=quality)
    return buffer.getvalue()


def coco_archives(n: int = 4) -> dict[str, bytes]:
    """File name -> bytes of val2017.zip, annotations_trainval2017.zip and
    stuffthingmaps_trainval2017.zip in the official layout, with `n` images."""
    images, maps, anns, entries = {}, {}, [], []
    for i, stem in enumerate(image_names(n)):
        rgb, labels, box = _scene(i)
        images[f"val2017/{stem}.jpg"] = _png(rgb, quality=95)
        maps[f"val2017/{stem}.png"] = _png(labels)
        x, y, w, h = box
        entries.append({"id": int(stem), "file_name": f"{stem}.jpg", "width": IMAGE_SIZE[0],
                        "height": IMAGE_SIZE[1]})  # fmt: skip
        polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
        anns.append({"id": i + 1, "image_id": int(stem), "category_id": PERSON, "iscrowd": 0,
                     "segmentation": [polygon], "area": w * h, "bbox": box})  # fmt: skip
    categories = [
        {"id": PERSON, "name": "person", "supercategory": "person"},
        {"id": CAR, "name": "car", "supercategory": "vehicle"},
    ]
    instances = {"info": {"description": "fake COCO val2017"}, "images": entries,
                 "annotations": anns, "categories": categories}  # fmt: skip
    maps["train2017/000000000009.png"] = _png(np.zeros((8, 8), np.uint8))  # not unpacked
    return {
        "val2017.zip": _zip(images),
        "annotations_trainval2017.zip": _zip(
            {
                "annotations/instances_val2017.json": json.dumps(instances).encode(),
                "annotations/captions_val2017.json": b'{"annotations": []}',  # not unpacked
            }
        ),  # fmt: skip
        "stuffthingmaps_trainval2017.zip": _zip(maps),
    }


def table_for(files: dict[str, bytes], base_url: str, n: int = 4) -> tuple[Archive, ...]:
    """The test's own table, shaped as indexing.coco.sources.COCO_VAL_ARCHIVES: sizes and MD5s
    of `files`, except the stuffthingmaps (unknown, as in the real table)."""

    def entry(name, filename, prefix, target, members, known=True):
        data = files[filename]
        return Archive(
            name=name, url=f"{base_url.rstrip('/')}/{filename}",
            size=len(data) if known else None,
            md5=hashlib.md5(data).hexdigest() if known else None,
            approx_size=len(data), prefix=prefix, target=target, members=members,
            unpacked_budget=1 << 20, source="the test's own archives",
        )  # fmt: skip

    return (
        entry("val2017", "val2017.zip", "val2017/", "val2017", n),
        entry(
            "annotations",
            "annotations_trainval2017.zip",
            "annotations/instances_val2017.json",
            "annotations",
            1,
        ),  # fmt: skip
        entry(
            "stuffthingmaps",
            "stuffthingmaps_trainval2017.zip",
            "val2017/",
            "stuffthingmaps/val2017",
            n,
            known=False,
        ),  # fmt: skip
    )


@dataclass
class FakeServer:
    """State of the local server: what it serves and how it misbehaves."""

    files: dict[str, bytes]
    ranges: bool = True  # honour Range requests (206); False: always 200 with the whole file
    drops: dict[str, int] = field(default_factory=dict)  # name -> body bytes sent before a drop
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (name, Range)
    url: str = ""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        fake: FakeServer = self.server.fake
        name, wanted = self.path.split("?")[0].rsplit("/", 1)[-1], self.headers.get("Range")
        fake.requests.append((name, wanted))
        data = fake.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = int(wanted.split("=")[1].split("-")[0]) if wanted and fake.ranges else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = fake.drops.pop(name, None)  # each drop happens once
        self.wfile.write(data[start:] if cut is None else data[start : start + cut])
        if cut is not None:
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serving(fake: FakeServer):
    """Serve `fake` on 127.0.0.1 (a free port) in a thread; yields it with .url set."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.fake = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def test_fake_archives_are_coco_layout(tmp_path) -> None:
    from indexing.scores.groundtruth import CocoLabels, read_stuffthing_png

    files = coco_archives(3)
    with zipfile.ZipFile(io.BytesIO(files["annotations_trainval2017.zip"])) as zf:
        zf.extractall(tmp_path)
    labels = CocoLabels(tmp_path / "annotations" / "instances_val2017.json")
    first = int(image_names(1)[0])
    assert labels.label_map(first).shape == IMAGE_SIZE[::-1]
    assert (labels.label_map(first) != 255).sum() == 24 * 40  # the person box
    with zipfile.ZipFile(io.BytesIO(files["stuffthingmaps_trainval2017.zip"])) as zf:
        zf.extractall(tmp_path / "maps")
    coarse = read_stuffthing_png(tmp_path / "maps" / "val2017" / f"{image_names(1)[0]}.png")
    assert set(np.unique(coarse)) == {9, 22, 23}  # person, plant, sky


def test_fake_server_honours_or_ignores_range() -> None:
    with serving(FakeServer({"a.bin": b"0123456789"})) as fake:
        request = urllib.request.Request(f"{fake.url}/a.bin", headers={"Range": "bytes=4-"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 206 and response.read() == b"456789"
        fake.ranges = False
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and response.read() == b"0123456789"
