"""The temporary build directory `<out>.partial/`: finished chunks, for --resume.

    <out>.partial/build.json                 the settings the chunks were made with
    <out>.partial/chunks/r{R}of{N}-{j}.npz   chunk j of rank R of N processes (atomic writes)
    <out>.partial/chunks/r{R}of{N}-{j}.maps  its images' assignment PNGs, back to back
    <out>.partial/index/                     the index being written (after extraction)

Rank R of N processes takes the images R, R + N, ... of the sorted collection and cuts its share
into chunks of `chunk_size`. A chunk counts as finished when its .npz exists (written after its
.maps file); --resume continues after the finished chunks when the settings are unchanged.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.store import write_bytes_atomic, write_json_atomic


@dataclass
class Chunk:
    """Extraction results of a run of images (S slots in total)."""

    positions: np.ndarray  # (n,) int64 positions in the collection, readable or not
    width: np.ndarray  # (n,) int32 image width W, 0 when skipped
    height: np.ndarray  # (n,) int32 image height H, 0 when skipped
    error: np.ndarray  # (n,) str: "" or why the image was skipped
    map_offset: np.ndarray  # (n,) int64 where the image's PNG starts in the chunk's .maps file
    map_length: np.ndarray  # (n,) int64 its length in bytes, 0 when skipped
    slot_position: np.ndarray  # (S,) int64 position of each slot's image
    prototype: np.ndarray  # (S,) int64
    area: np.ndarray  # (S,) float32 fraction of the image
    score: np.ndarray  # (S,) float32 mean dots over the slot's pixels
    bbox: np.ndarray  # (S, 4) int32 XYWH in image pixels
    embedding: np.ndarray  # (S, D) float32 L2-normalised
    confusion: np.ndarray  # (K, C) int64 prototype x class pixel counts; (0, 0) without labels
    evaluated: np.ndarray  # () int64 images counted in `confusion`
    unlabelled: np.ndarray  # () int64 readable images without a usable label map

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.asarray(getattr(self, name)) for name in _FIELDS})
        write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Chunk:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{name: data[name] for name in _FIELDS})

    @classmethod
    def concatenate(cls, chunks: list[Chunk], dim: int, shape: tuple[int, int]) -> Chunk:
        """All chunks in one, images ordered by position (slots follow their images)."""
        cat = _empty(dim)
        if chunks:
            cat = {name: np.concatenate([getattr(c, name) for c in chunks]) for name in cat}
        order = np.argsort(cat["positions"], kind="stable")
        slot_order = np.argsort(cat["slot_position"], kind="stable")  # keeps prototype order
        for name in ("positions", "width", "height", "error", "map_offset", "map_length"):
            cat[name] = cat[name][order]
        for name in ("slot_position", "prototype", "area", "score", "bbox", "embedding"):
            cat[name] = cat[name][slot_order]
        confusion = np.zeros(shape, dtype=np.int64)
        for c in chunks:
            if c.confusion.size:
                confusion += c.confusion
        return cls(
            **cat,
            confusion=confusion,
            evaluated=np.int64(sum(int(c.evaluated) for c in chunks)),
            unlabelled=np.int64(sum(int(c.unlabelled) for c in chunks)),
        )


_FIELDS = tuple(Chunk.__dataclass_fields__)


def _empty(dim: int) -> dict:
    return {
        "positions": np.zeros(0, np.int64),
        "width": np.zeros(0, np.int32),
        "height": np.zeros(0, np.int32),
        "error": np.zeros(0, "<U1"),
        "map_offset": np.zeros(0, np.int64),
        "map_length": np.zeros(0, np.int64),
        "slot_position": np.zeros(0, np.int64),
        "prototype": np.zeros(0, np.int64),
        "area": np.zeros(0, np.float32),
        "score": np.zeros(0, np.float32),
        "bbox": np.zeros((0, 4), np.int32),
        "embedding": np.zeros((0, dim), np.float32),
    }


def is_partial_build(root: str | Path) -> bool:
    """True when `root` is a `<out>.partial` directory of a build: its build.json, or (a build
    killed before writing it) nothing but its chunks/ and index/ folders."""
    root = Path(root)
    try:
        return isinstance(json.loads((root / "build.json").read_text()), dict)
    except (OSError, ValueError):
        return {p.name for p in root.iterdir()} <= {"chunks", "index"}


def shard(num_images: int, rank: int, world: int, chunk_size: int) -> list[list[int]]:
    """Positions of the chunks of one rank: images rank, rank + world, ... cut into chunks."""
    mine = list(range(rank, num_images, world))
    return [mine[i : i + chunk_size] for i in range(0, len(mine), chunk_size)]


def chunk_of(position: int, world: int, chunk_size: int) -> tuple[int, int]:
    """(rank, j): the chunk of `shard` that holds the image at `position`."""
    return position % world, (position // world) // chunk_size


class PartialBuild:
    """The `<out>.partial` directory of one build configuration (`settings`)."""

    def __init__(self, root: Path, settings: dict):
        self.root = Path(root)
        self.settings = settings
        self.index_dir = self.root / "index"
        self.chunk_dir = self.root / "chunks"

    def check_resumable(self) -> bool:
        """True when a partial build with the same settings exists; ValueError when one with
        other settings does (a resume would mix two builds)."""
        path = self.root / "build.json"
        if not path.is_file():
            return False
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = None
        if saved != self.settings:
            changed = sorted(
                key
                for key in set(self.settings) | set(saved or {})
                if (saved or {}).get(key) != self.settings.get(key)
            )
            raise ValueError(
                f"cannot resume: {self.root} was made with other settings "
                f"({', '.join(changed) or 'unreadable build.json'}); "
                "run without --resume to start again"
            )
        return True

    def prepare(self, resume: bool) -> None:
        """Start clean (remove an earlier partial build) unless resuming a matching one."""
        if not (resume and self.check_resumable()):
            if self.root.exists():
                action = "nothing to resume in" if resume else "starting again: removing"
                print(f"{action} {self.root}", file=sys.stderr)
            shutil.rmtree(self.root, ignore_errors=True)
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / "build.json", self.settings)

    def chunk_path(self, rank: int, world: int, j: int) -> Path:
        return self.chunk_dir / f"r{rank}of{world}-{j:06d}.npz"

    def maps_path(self, rank: int, world: int, j: int) -> Path:
        return self.chunk_dir / f"r{rank}of{world}-{j:06d}.maps"

    def is_finished(self, rank: int, world: int, j: int) -> bool:
        """Chunk file readable and its maps file of the size the chunk records."""
        path, maps = self.chunk_path(rank, world, j), self.maps_path(rank, world, j)
        try:
            chunk = Chunk.load(path)
            return maps.stat().st_size == int(chunk.map_length.sum())
        except (OSError, ValueError, KeyError):
            return False

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
