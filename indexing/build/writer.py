"""Write an index directory from merged extraction results (`indexing build` and the synthetic
indexes of bench/index_scale.py both go through write_index, so both have the same format).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from indexing.build.tables import images_table, prototypes_table, rank_by_score, slots_table
from indexing.store.assignments import ShardWriter
from indexing.store.directory import (
    CONFUSION,
    EVALUATION,
    FAISS,
    IMAGES,
    MANIFEST,
    PROTOTYPE_VECTORS,
    PROTOTYPES,
    RANKED,
    SLOTS,
    write_json_atomic,
    write_table,
)
from indexing.store.faiss_index import build_faiss, save_faiss
from indexing.store.schema import IMAGE_COLUMNS, Chunk, index_manifest


def write_index(
    target: Path,
    merged: Chunk,
    paths: list[str],
    image_ids: list[int],
    maps: Iterable[bytes],
    prototype_vectors: np.ndarray,
    header: dict,
    index_type: str = "auto",
    confusion: np.ndarray | None = None,
    evaluation: dict | None = None,
    started: float | None = None,
    progress: bool = False,
) -> dict:
    """Write every file of an index into the (temporary) directory `target`; returns the
    manifest.

    merged: all images (positions 0..n-1, in path order) and their slots (image order, then
    prototype), as indexing.store.schema.Chunk. maps: the PNG bytes (indexing.store.assignments.
    encode_assignment) of each readable image, in path order. prototype_vectors: (K, D) float32.
    header: the manifest's description of the source (indexing.store.schema.manifest_header; its
    build's "finished" and "seconds" are set here when `started` is given). index_type: auto |
    flat | ivf (indexing.store.faiss_index).
    confusion (K, L) and evaluation: the build's scores, when it had annotations.
    """
    target = Path(target)
    K = len(prototype_vectors)
    images = images_table(merged, paths, image_ids)
    slots = slots_table(merged, image_ids)
    ranked = rank_by_score(slots)  # row = slot id
    prototypes = prototypes_table(slots, K, confusion, header.get("class_names"), ranked=ranked)
    images = _with_map_locations(images, maps, target)
    write_table(target / IMAGES, images[list(IMAGE_COLUMNS)])
    write_table(target / SLOTS, slots)
    del slots
    np.save(target / RANKED, ranked.astype(np.int64))
    prototypes.to_parquet(target / PROTOTYPES, index=False)
    np.save(target / PROTOTYPE_VECTORS, np.asarray(prototype_vectors, dtype=np.float32))
    index, faiss_info = build_faiss(merged.embedding, index_type, progress=progress)
    save_faiss(index, target / FAISS)
    del index
    if confusion is not None:
        np.save(target / CONFUSION, confusion)
    if evaluation is not None:
        write_json_atomic(target / EVALUATION, evaluation)
    skipped = [
        {"path": paths[p], "reason": str(e)} for p, e in zip(merged.positions, merged.error) if e
    ]
    counts = {"images": len(images), "slots": len(ranked), "skipped": len(skipped)}
    manifest = index_manifest(header, counts, skipped, faiss_info)
    if started is not None:  # finished: now, after the slow parts
        finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest["build"] = {**manifest.get("build", {}), "finished": finished}
        manifest["build"]["seconds"] = _since(started)
    write_json_atomic(target / MANIFEST, manifest)
    return manifest


def _with_map_locations(images: pd.DataFrame, maps: Iterable[bytes], target: Path) -> pd.DataFrame:
    """images + map_shard, map_offset, map_length: where each image's PNG went in the shards."""
    where = np.zeros((len(images), 3), np.int64)
    count = 0
    with ShardWriter(target) as shards:
        for count, png in enumerate(maps, start=1):
            if count > len(images):
                break
            where[count - 1] = shards.add(png)
    if count != len(images):
        raise RuntimeError(f"{count} assignment maps for {len(images)} images")
    return images.assign(
        map_shard=where[:, 0].astype(np.int32),
        map_offset=where[:, 1],
        map_length=where[:, 2].astype(np.int32),
    )


def _since(started: float) -> float:
    return round(time.time() - started, 2)
