"""Upload validation: each bad-input kind gets a clear message; odd but valid images work."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from explorer.uploads import UploadLimits, UploadRejected, read_upload

LIMITS = UploadLimits()

REJECTED = {
    "not_image": "not an image",
    "truncated": "could not be decoded completely",
    "one_pixel": "only 1 x 1 pixels",
    "huge_header": "more pixels than the limit",
    "empty": "empty",
    "thin": "4000 x 16 pixels.*only 4 pixels",
}


@pytest.mark.parametrize("kind", sorted(REJECTED))
def test_bad_uploads_are_rejected_with_a_clear_message(upload_samples, kind):
    with pytest.raises(UploadRejected, match=REJECTED[kind]):
        read_upload(upload_samples[kind], LIMITS)


def test_missing_or_absent_file(tmp_path):
    with pytest.raises(UploadRejected, match="No file"):
        read_upload(None, LIMITS)
    with pytest.raises(UploadRejected, match="could not be found"):
        read_upload(tmp_path / "gone.png", LIMITS)


def test_byte_and_pixel_limits_come_from_the_limits(upload_samples):
    with pytest.raises(UploadRejected, match=r"uploads are limited to"):
        read_upload(upload_samples["good"], UploadLimits(max_bytes=100))
    with pytest.raises(UploadRejected, match=r"128 x 96 pixels; the limit is 1,000 pixels"):
        read_upload(upload_samples["good"], UploadLimits(max_pixels=1000))


def test_the_pixel_check_happens_before_decoding(upload_samples, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image over the pixel limit")

    monkeypatch.setattr("explorer.uploads.load_rgb", no_decoding)
    with pytest.raises(UploadRejected, match="limit"):
        read_upload(upload_samples["good"], UploadLimits(max_pixels=1000))


def test_cmyk_jpeg_becomes_rgb(upload_samples):
    image = read_upload(upload_samples["cmyk"], LIMITS).image
    assert image.mode == "RGB" and image.size == (64, 48)
    r, g, b = np.asarray(image)[24, 32]
    assert r > 200 and g < 60 and b < 60  # C=0 M=255 Y=255 K=0 is red


def test_16_bit_png_is_scaled_to_8_bits(upload_samples):
    image = read_upload(upload_samples["png16"], LIMITS).image
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] > 200


def test_exif_orientation_is_applied(upload_samples):
    upload = read_upload(upload_samples["exif"], LIMITS)
    assert upload.image.size == (40, 80)  # stored 80 x 40, orientation 6


def test_palette_with_transparency_is_composited(upload_samples):
    image = read_upload(upload_samples["palette_alpha"], LIMITS).image
    assert image.mode == "RGB" and tuple(np.asarray(image)[0, 0]) == (255, 255, 255)


def test_the_smallest_side_is_checked_after_the_reduction_too(tmp_path):
    path = tmp_path / "strip.png"
    Image.new("RGB", (2048, 32), (1, 2, 3)).save(path)
    assert read_upload(path, UploadLimits(work_side=1024)).image.size == (1024, 16)
    with pytest.raises(UploadRejected, match="only 15 pixels"):
        read_upload(path, UploadLimits(work_side=960))


def test_large_images_are_reduced_to_the_working_size(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (3000, 1500), (1, 2, 3)).save(path)
    upload = read_upload(path, UploadLimits(work_side=1024))
    assert upload.image.size == (1024, 512) and upload.original_size == (3000, 1500)


def test_real_photos_are_accepted_as_they_are(photos):
    """scikit-image's photos (RGB and grayscale PNG, JPEG, up to 1000 x 872) pass unchanged
    but for the working size."""
    from conftest import PHOTOS

    for path in photos:
        W, H, _ = PHOTOS[path.name]
        upload = read_upload(path, LIMITS)
        scale = min(1.0, LIMITS.work_side / max(W, H))
        assert upload.original_size == (W, H) and upload.image.mode == "RGB"
        assert upload.image.size == (round(W * scale), round(H * scale)), path.name
