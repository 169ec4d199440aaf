"""Assignment maps on disk: lossless PNGs packed back to back into a few shard files.

    <index>/assignments/00000.bin, 00001.bin, ...   concatenated PNGs, at most ~1 GiB each

images.arrow holds, per image, where its PNG lies (map_shard, map_offset, map_length); a read is
one pread of `map_length` bytes and a PNG decode. A million images make a few shard files, not a
directory of a million files (slow to list, copy and delete, and a strain on inode tables).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

ASSIGNMENTS = "assignments"
SHARD_BYTES = 1 << 30  # a new shard starts after this many bytes


def encode_assignment(assignment: np.ndarray, num_prototypes: int) -> bytes:
    """(H, W) prototype map -> lossless PNG bytes: 8-bit when K <= 256, else 16-bit."""
    dtype = np.uint8 if num_prototypes <= 256 else np.uint16  # mode L / I;16
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(assignment, dtype=dtype)).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def decode_assignment(data: bytes) -> np.ndarray:
    """(H, W) int16 prototype map from PNG bytes."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image).astype(np.int16)


def shard_path(root: str | Path, shard: int) -> Path:
    return Path(root) / ASSIGNMENTS / f"{int(shard):05d}.bin"


class ShardWriter:
    """Appends PNGs to the shards of an index being written; `add` says where each one went."""

    def __init__(self, root: str | Path, shard_bytes: int = SHARD_BYTES):
        self.root = Path(root)
        self.shard_bytes = shard_bytes
        self.shard, self.offset = 0, 0
        (self.root / ASSIGNMENTS).mkdir(parents=True, exist_ok=True)
        self._file = open(shard_path(self.root, 0), "wb")  # noqa: SIM115 (closed in close())

    def add(self, png: bytes) -> tuple[int, int, int]:
        """Append one PNG; returns (shard, offset, length)."""
        if self.offset and self.offset + len(png) > self.shard_bytes:
            self._finish()
            self.shard, self.offset = self.shard + 1, 0
            self._file = open(shard_path(self.root, self.shard), "wb")  # noqa: SIM115
        self._file.write(png)
        where = (self.shard, self.offset, len(png))
        self.offset += len(png)
        return where

    def _finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())  # durable before the index directory is renamed in
        self._file.close()

    def close(self) -> None:
        self._finish()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self._finish()
        else:
            self._file.close()


def read_assignment(root: str | Path, shard: int, offset: int, length: int) -> np.ndarray:
    """(H, W) int16 map stored at (shard, offset, length) of the index at `root`.

    OSError when the shard is missing; ValueError when the bytes are not a whole PNG (a
    truncated or overwritten shard)."""
    fd = os.open(shard_path(root, shard), os.O_RDONLY)
    try:
        data = os.pread(fd, int(length), int(offset))
    finally:
        os.close(fd)
    if len(data) != length:
        raise ValueError(f"assignment shard {shard:05d}.bin is truncated")
    try:
        return decode_assignment(data)
    except (OSError, SyntaxError) as error:  # PIL's errors for damaged PNG data
        raise ValueError(f"assignment shard {shard:05d}.bin is damaged ({error})") from error
