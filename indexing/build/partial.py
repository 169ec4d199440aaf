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

import json
import shutil
import sys
from pathlib import Path

from indexing.store.directory import write_bytes_atomic, write_json_atomic
from indexing.store.schema import Chunk


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


class ResumeMismatch(ValueError):
    """--resume was asked for, but the partial build was made with other settings."""


class PartialBuild:
    """The `<out>.partial` directory of one build configuration (`settings`)."""

    def __init__(self, root: Path, settings: dict):
        self.root = Path(root)
        self.settings = settings
        self.index_dir = self.root / "index"
        self.chunk_dir = self.root / "chunks"

    def check_resumable(self) -> bool:
        """True when a partial build with the same settings exists; ResumeMismatch (a
        ValueError) when one with other settings does (a resume would mix two builds)."""
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
            raise ResumeMismatch(
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

    def save_chunk(self, rank: int, world: int, j: int, chunk: Chunk, maps: bytes) -> None:
        """The maps file first (the PNGs of the chunk's images, back to back), then the chunk:
        a chunk on disk means both are complete."""
        write_bytes_atomic(self.maps_path(rank, world, j), maps)
        write_bytes_atomic(self.chunk_path(rank, world, j), chunk.to_npz())

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
