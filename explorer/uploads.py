"""Validation of uploaded images: bytes, pixels (from the header, before decoding), decoding.

Every refusal is an UploadRejected with a message meant for the person who uploaded the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from model.data import UnreadableImage, load_rgb


class Upload(NamedTuple):
    image: Image.Image  # RGB, EXIF orientation applied, longer side at most work_side
    original_size: tuple[int, int]  # (W, H) as stored in the file


class UploadRejected(ValueError):
    """An upload the app will not process; str(error) is shown to the user."""


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 10 * 2**20  # larger files are refused (the server refuses them first)
    max_pixels: int = 40_000_000  # width x height from the header; above it nothing is decoded
    min_side: int = 16  # smaller images hold less than one feature-map cell of content
    work_side: int = 1024  # longer side an accepted image is reduced to for grouping and display


def read_upload(path: str | Path | None, limits: UploadLimits) -> Upload:
    """An uploaded file -> Upload(RGB PIL image, EXIF orientation applied, at most `work_side`
    pixels on its longer side; the original size).

    Checks, in order: a file was given, its size in bytes, that PIL recognises it, its pixel
    count and smallest side from the header (as stored and once reduced to `work_side`), then
    a full decode (truncated files fail here). Raises UploadRejected with a clear message for
    each.
    """
    path = _check_file(path, limits)
    _check_header(path, limits)
    try:
        image = load_rgb(path, max_pixels=limits.max_pixels)
    except UnreadableImage as error:
        raise UploadRejected(
            "The image could not be decoded completely (truncated or damaged file?)."
        ) from error
    original_size = image.size
    size = reduced_size(image.size, limits.work_side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return Upload(image, original_size)


def _check_file(path: str | Path | None, limits: UploadLimits) -> Path:
    """A file was given, it exists, and its size in bytes is within the limit."""
    if path is None or str(path) == "":
        raise UploadRejected("No file was uploaded.")
    path = Path(path)
    if not path.is_file():
        raise UploadRejected("The uploaded file could not be found on the server; upload it again.")
    size = path.stat().st_size
    if size == 0:
        raise UploadRejected("The uploaded file is empty.")
    if size > limits.max_bytes:
        raise UploadRejected(
            f"The file is {size / 2**20:.1f} MB; uploads are limited to "
            f"{limits.max_bytes / 2**20:.0f} MB."
        )
    return path


def _check_header(path: Path, limits: UploadLimits) -> None:
    """PIL recognises the file; its pixel count and smallest side from the header, as stored
    and once reduced to `work_side`, are within the limits."""
    try:
        with Image.open(path) as header:  # reads the header only
            width, height = header.width, header.height
    except Image.DecompressionBombError as error:  # PIL's own guard (Image.MAX_IMAGE_PIXELS)
        raise UploadRejected(
            f"The image has far more pixels than the limit of {_pixels(limits.max_pixels)}. "
            "Please upload a smaller image."
        ) from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UploadRejected(
            "This file is not an image the app can read (JPEG, PNG, WebP, BMP, ...)."
        ) from error
    if width * height > limits.max_pixels:
        raise UploadRejected(
            f"The image is {width:,} x {height:,} pixels; the limit is "
            f"{_pixels(limits.max_pixels)}. Please upload a smaller image."
        )
    if min(width, height) < limits.min_side:
        raise UploadRejected(
            f"The image is only {width} x {height} pixels; at least {limits.min_side} x "
            f"{limits.min_side} is needed to find segments."
        )
    short = min(reduced_size((width, height), limits.work_side))
    if short < limits.min_side:  # a long thin strip: its short side shrinks with the long one
        raise UploadRejected(
            f"The image is {width} x {height} pixels: reduced to {limits.work_side} pixels on "
            f"its longer side, it would be only {short} pixels on the other, and at least "
            f"{limits.min_side} are needed to find segments. Please crop it."
        )


def reduced_size(size: tuple[int, int], work_side: int) -> tuple[int, int]:
    """(W, H) -> the size with the longer side at most `work_side` (aspect ratio kept)."""
    scale = min(1.0, work_side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _pixels(count: int) -> str:
    return f"{count / 1e6:g} megapixels" if count >= 1_000_000 else f"{count:,} pixels"
