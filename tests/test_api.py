"""The named API endpoints through gradio_client, bad uploads over HTTP, and what is served."""

from __future__ import annotations

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


def test_only_images_and_the_cache_are_served(explorer_app, explorer_data, explorer_ctx):
    base = f"{explorer_app}/gradio_api/file="
    image = sorted(explorer_data["images"].glob("*.jpg"))[0]
    assert http_status(base + str(image)) == 200
    for secret in (
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
