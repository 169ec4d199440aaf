"""The app's cache folder: files written atomically (thumbnails, overlays, exports) and the
bounded overlay cache pruned oldest first. Everything here is rebuilt on demand."""

from __future__ import annotations

import os
from pathlib import Path

from indexing.store.directory import write_bytes_atomic


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file and rename), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data, durable=False)  # cache and exports: rebuilt on demand
    return path


def prune_oldest(folder: Path, keep: int, spare: Path | None = None) -> None:
    """Delete the oldest files of `folder` beyond the newest `keep` (a bounded cache); never
    `spare`, the file the caller is about to hand out.

    Several requests prune at once: a file listed here may be gone (pruned by another request)
    before its time is read or it is deleted; such files are skipped, not counted."""
    try:
        listing = os.scandir(folder)
    except FileNotFoundError:
        return
    dated = []
    for entry in listing:
        if entry.name.startswith(".") or Path(entry.path) == spare:
            continue
        try:
            if entry.is_file():
                dated.append((entry.stat().st_mtime_ns, entry.path))
        except FileNotFoundError:
            continue
    excess = len(dated) - max(keep - (spare is not None), 0)
    for _, path in sorted(dated)[: max(excess, 0)]:
        Path(path).unlink(missing_ok=True)
