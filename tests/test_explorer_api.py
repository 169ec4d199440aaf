"""The named API endpoints through gradio_client, bad uploads over HTTP, and what is served."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import http_status
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

pytestmark = [
    pytest.mark.slow,
    # gradio's own pandas calls under pandas 3
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]

BAD = {
    "not_image": "not an image",
    "truncated": "could not be decoded completely",
    "one_pixel": "only 1 x 1 pixels",
    "huge_header": "more pixels than the limit",
    "empty": "empty",
    "thin": "only 4 pixels",
}


@pytest.fixture(scope="module")
def client(explorer_app):
    return Client(explorer_app, verbose=False)


def test_named_endpoints_are_documented(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/group_image", "/top_segments", "/similar"} <= set(endpoints)
    assert len(endpoints) == 3  # the UI's own events stay undocumented


def test_group_image(client, upload_samples):
    overlay, table = client.predict(
        handle_file(str(upload_samples["good"])), api_name="/group_image"
    )
    with Image.open(overlay) as image:
        assert image.size == (128, 96) and image.format == "PNG"
    assert table["headers"][:4] == ["prototype", "name", "area %", "score"]
    assert abs(sum(row[2] for row in table["data"]) - 100) < 1


def test_top_segments_and_similar(client, explorer_ctx):
    gallery, table = client.predict(3, 5, api_name="/top_segments")
    assert len(gallery) == 5 and len(table["data"]) == 5
    assert all(item["caption"].startswith("img ") for item in gallery)
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert {row["prototype"] for row in rows} == {3}
    expected = explorer_ctx.index.top_segments(3, 5)
    assert [row["slot_id"] for row in rows] == list(expected["slot_id"])
    gallery, table = client.predict(rows[0]["slot_id"], 4, api_name="/similar")
    sims = [dict(zip(table["headers"], row))["similarity"] for row in table["data"]]
    assert len(gallery) == 4 and sims == sorted(sims, reverse=True)
    with Image.open(gallery[0]["image"]) as thumb:
        assert max(thumb.size) == explorer_ctx.config.thumbnail_side


def test_bad_requests_get_clear_errors(client):
    with pytest.raises(AppError, match="does not exist"):
        client.predict(99, 5, api_name="/top_segments")
    with pytest.raises(AppError, match="No slot"):
        client.predict(123456789, 5, api_name="/similar")
    with pytest.raises(AppError, match="Not a prototype: 'abc'"):
        client.predict("abc", 5, api_name="/top_segments")
    with pytest.raises(AppError, match="k must be a whole number, not 'many'"):
        client.predict(1, "many", api_name="/top_segments")
    with pytest.raises(AppError, match="No slot 'x'"):
        client.predict("x", 5, api_name="/similar")


def call_raw(url: str, api_name: str, body: str) -> str:
    """POST a JSON body as it is (gradio_client refuses NaN) to /gradio_api/call/<api_name>;
    -> the text of the result's event stream."""
    request = urllib.request.Request(
        f"{url}/gradio_api/call/{api_name}",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}/gradio_api/call/{api_name}/{event_id}", timeout=60) as r:
        return r.read().decode()


@pytest.mark.parametrize(
    ("api_name", "body", "reason"),
    [
        ("top_segments", '{"data": [NaN, 5]}', "Not a prototype: nan"),
        ("top_segments", '{"data": [Infinity, 5]}', "Not a prototype: inf"),
        ("top_segments", '{"data": [1, NaN]}', "k must be a whole number, not nan"),
        ("similar", '{"data": [-Infinity, 5]}', "No slot -inf"),
    ],
)
def test_nan_and_infinite_arguments_get_the_reason(explorer_app, api_name, body, reason):
    events = call_raw(explorer_app, api_name, body)
    assert "event: error" in events and reason in events, events


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_uploads_get_a_clear_error_and_the_app_keeps_serving(client, upload_samples, kind):
    with pytest.raises(AppError, match=BAD[kind]):
        client.predict(handle_file(str(upload_samples[kind])), api_name="/group_image")
    gallery, _ = client.predict(1, 2, api_name="/top_segments")
    assert len(gallery) == 2


@pytest.mark.parametrize("kind", ["cmyk", "png16", "exif", "palette_alpha"])
def test_odd_but_valid_images_work(client, upload_samples, kind):
    overlay, table = client.predict(handle_file(str(upload_samples[kind])), api_name="/group_image")
    expected = Image.open(upload_samples[kind])
    size = (40, 80) if kind == "exif" else expected.size
    with Image.open(overlay) as image:
        assert image.size == size
    assert table["data"]


def test_uploads_over_the_byte_limit_are_refused_by_the_server(client, explorer_ctx, tmp_path):
    path = tmp_path / "big.png"
    noise = np.random.default_rng(0).integers(0, 256, (2200, 2200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, compress_level=0)
    assert path.stat().st_size > explorer_ctx.config.limits.max_bytes
    with pytest.raises(Exception, match="(?i)too large|exceeds|413|maximum"):
        client.predict(handle_file(str(path)), api_name="/group_image")
    gallery, _ = client.predict(1, 1, api_name="/top_segments")
    assert len(gallery) == 1


def test_only_the_apps_pictures_are_served(client, explorer_app, explorer_data, explorer_ctx):
    """Thumbnails and overlays, which the app hands out, are served; nothing else: not the
    index, the checkpoint, the names, nor the collection folder, whose originals the app never
    hands out and which may hold other files (annotations, notes)."""
    base = f"{explorer_app}/gradio_api/file="
    _, table = client.predict(1, 1, api_name="/top_segments")
    thumbnail = explorer_ctx.thumbs_dir / f"{table['data'][0][0]}.jpg"  # slot_id.jpg
    assert thumbnail.is_file() and http_status(base + str(thumbnail)) == 200
    image = sorted(explorer_data["images"].glob("*.jpg"))[0]
    notes = explorer_data["images"] / "notes.txt"
    notes.write_text("not a picture")
    try:
        assert http_status(base + str(notes)) in (403, 404)
    finally:
        notes.unlink()
    for secret in (
        image,
        explorer_data["index"] / "manifest.json",
        explorer_data["index"] / "slots.arrow",
        explorer_data["index"] / "assignments" / "00000.bin",
        explorer_data["checkpoint"],
        explorer_data["annotations"],
        explorer_data["index"].with_name("index.labels.json"),
        Path(__file__).resolve().parents[1] / "pyproject.toml",  # the working directory
        Path("/etc/passwd"),
    ):
        assert http_status(base + str(secret)) in (403, 404), secret
