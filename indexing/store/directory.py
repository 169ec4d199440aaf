"""The index directory on disk: file names, reading the manifest, table files, atomic writes
(what the files hold: indexing.store.schema).

    <index>/manifest.json        format, checkpoint SHA-256 and model shape, image root, counts
    <index>/images.arrow         image_id, path (relative to the image root, POSIX), width,
                                 height, slot_start, slot_count, map_shard, map_offset, map_length
    <index>/slots.arrow          slot_id, image_id, prototype, area, score, bbox_x/y/w/h
    <index>/slots_ranked.npy     (S,) slot ids by prototype, then score (desc), then slot id
    <index>/prototypes.parquet   per-prototype statistics and top slot ids by score
    <index>/prototypes.npy       (K, D) float32 L2-normalised prototype vectors
    <index>/slots.faiss          L2-normalised slot embeddings, faiss id = slot id (inner product)
    <index>/assignments/NNNNN.bin   (H, W) assignment maps as PNGs, packed (store.assignments)
    <index>/evaluation.json, confusion.npy   with annotations: scores and (K, L) pixel counts
    <index>.labels.json          beside the directory: the user's prototype names

The .arrow tables are uncompressed Arrow IPC files (Feather v2: pandas.read_feather reads them)
of one record batch, and slots.faiss is read with faiss's memory mapping: opening an index maps
these files and reads nothing of them, whatever the collection's size; a query touches only the
pages it needs. An index is written in a temporary directory and renamed into place when
complete; afterwards it is read-only (files that are mapped are never rewritten in place).
Format version 2 (this layout) replaced version 1 (parquet tables, one PNG file per image).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from indexing.store.schema import FORMAT, FORMAT_VERSION, manifest_problem
from model.atomic import write_bytes_atomic

MANIFEST = "manifest.json"
IMAGES = "images.arrow"
SLOTS = "slots.arrow"
RANKED = "slots_ranked.npy"
PROTOTYPES = "prototypes.parquet"
PROTOTYPE_VECTORS = "prototypes.npy"
FAISS = "slots.faiss"
EVALUATION = "evaluation.json"
CONFUSION = "confusion.npy"


class IndexFormatError(ValueError):
    """The directory is not an index of this program, or one of an older format."""


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: str | Path, obj: object) -> None:
    """JSON (indented, no NaN) written atomically: model.atomic.write_bytes_atomic."""
    write_bytes_atomic(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def read_manifest(root: str | Path) -> dict:
    """The manifest of an index directory; IndexFormatError when it is not (this version's)
    index, or when a field its readers need is missing or of the wrong type."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"index directory not found: {root}")
    path = root / MANIFEST
    if not path.is_file():
        hint = " (an interrupted build? rerun it with --resume)" if _is_partial(root) else ""
        raise IndexFormatError(f"{root} is not an index: it has no {MANIFEST}{hint}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise IndexFormatError(f"{path}: unreadable manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{root} is not a SlotCon Explorer index (format {FORMAT!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        older = isinstance(version, int) and version < FORMAT_VERSION
        raise IndexFormatError(
            f"{root} is an index of format version {version}"
            + (" (written by an earlier version of this program)" if older else "")
            + f"; this program reads version {FORMAT_VERSION}: rebuild it with "
            "`python -m indexing build` (the same command and checkpoint as before; concept "
            "names are kept)"
        )
    problem = manifest_problem(manifest)
    if problem:
        raise IndexFormatError(
            f"{path} is damaged: {problem}; rebuild the index with `python -m indexing build` "
            "(or restore the manifest from a backup)"
        )
    return manifest


def is_index_dir(root: str | Path) -> bool:
    """True when `root` holds an index of this program (any format version): the only kind
    of directory `python -m indexing build` replaces."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def _is_partial(root: Path) -> bool:
    return root.name.endswith(".partial")


def partial_dir(out: str | Path) -> Path:
    """The temporary build directory of an index at `out`: `<out>.partial`."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def labels_path(root: str | Path) -> Path:
    """The user's prototype names live beside the index: `<index>.labels.json`."""
    root = Path(root)
    return root.with_name(root.name + ".labels.json")


def write_table(path: str | Path, table: pd.DataFrame) -> None:
    """Write a DataFrame as an uncompressed Arrow IPC file of one record batch, so that
    open_table maps each column as one contiguous array."""
    arrow = pa.Table.from_pandas(table, preserve_index=False).combine_chunks()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, arrow.schema) as writer:
        writer.write_table(arrow, max_chunksize=max(1, arrow.num_rows))


def open_table(path: str | Path) -> pa.Table:
    """A table of write_table, memory-mapped: pages are read when a query touches them."""
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def column(table: pa.Table, name: str) -> np.ndarray:
    """A fixed-width column of an open_table table as a read-only view of the mapped file."""
    values = table.column(name)
    if values.num_chunks == 1:
        return values.chunk(0).to_numpy(zero_copy_only=True)
    return values.to_numpy()  # no rows: no chunk to map


def replace_directory(new: Path, target: Path) -> None:
    """Move the complete directory `new` to `target`, replacing an existing one.

    Each rename is atomic; an existing `target` is moved aside first and deleted only after
    `new` is in place, so an index is at `target` at all times but for the instant between the
    two renames.
    """
    target = Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.replaced-{secrets.token_hex(4)}")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
