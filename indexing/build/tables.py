"""The index tables, made from the merged extraction results.

Slot ids are 0..S-1 in (image path order, prototype) order, so they do not depend on how the
images were batched, chunked or sharded over processes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from indexing.scores.metrics import prototype_purity
from indexing.store.schema import BBOX_COLUMNS, SLOT_COLUMNS, Chunk

TOP_K = 100  # top slot ids by score kept per prototype in prototypes.parquet


def images_table(merged: Chunk, paths: list[str], image_ids: list[int]) -> pd.DataFrame:
    """image_id, path (relative POSIX), width W, height H, slot_start, slot_count of the
    readable images, path order (an image's slots are the rows [start, start + count) of the
    slots table, which follows the same order)."""
    ok = merged.error == ""
    positions = merged.positions[ok]
    count = np.bincount(merged.slot_position, minlength=len(merged.positions))[positions]
    return pd.DataFrame(
        {
            "image_id": np.asarray(image_ids, dtype=np.int64)[positions],
            "path": [paths[p] for p in positions],
            "width": merged.width[ok].astype(np.int32),
            "height": merged.height[ok].astype(np.int32),
            "slot_start": (np.cumsum(count) - count).astype(np.int64),
            "slot_count": count.astype(np.int32),
        }
    )


def slots_table(merged: Chunk, image_ids: list[int]) -> pd.DataFrame:
    """indexing.store.schema.SLOT_COLUMNS: slot_id, image_id, prototype, area, score, bbox_x,
    bbox_y, bbox_w, bbox_h (XYWH px)."""
    S = len(merged.prototype)
    table = pd.DataFrame(
        {
            "slot_id": np.arange(S, dtype=np.int64),
            "image_id": np.asarray(image_ids, dtype=np.int64)[merged.slot_position],
            "prototype": merged.prototype.astype(np.int32),
            "area": merged.area.astype(np.float32),
            "score": merged.score.astype(np.float32),
            **dict(zip(BBOX_COLUMNS, merged.bbox.astype(np.int32).T)),
        }
    )
    return table[list(SLOT_COLUMNS)]


def rank_by_score(slots: pd.DataFrame) -> np.ndarray:
    """Row order of `slots` by prototype, then score descending, then slot_id (ties)."""
    return np.lexsort(
        (slots["slot_id"].to_numpy(), -slots["score"].to_numpy(), slots["prototype"].to_numpy())
    )


def prototypes_table(
    slots: pd.DataFrame,
    num_prototypes: int,
    confusion: np.ndarray | None = None,
    class_names: list[str] | None = None,
    top_k: int = TOP_K,
    ranked: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per prototype 0..K-1 (also absent ones): images, slots, mean_area, mean_score
    (NaN when absent), top_slot_ids (by score, best first, at most top_k), and with a (K, L)
    confusion: dominant_class (name, "" without labelled pixels), dominant_class_index (-1),
    purity (fraction in [0, 1], NaN). ranked: rank_by_score(slots) when already computed."""
    K = num_prototypes
    proto = slots["prototype"].to_numpy()
    counts = np.bincount(proto, minlength=K)[:K]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_area = np.bincount(proto, slots["area"].to_numpy(np.float64), K) / counts
        mean_score = np.bincount(proto, slots["score"].to_numpy(np.float64), K) / counts
    order = rank_by_score(slots) if ranked is None else ranked
    starts = np.concatenate([[0], np.cumsum(counts)])
    ids = slots["slot_id"].to_numpy()[order]
    table = pd.DataFrame(
        {
            "prototype": np.arange(K, dtype=np.int32),
            "images": slots.groupby("prototype")["image_id"]
            .nunique()
            .reindex(range(K), fill_value=0)
            .to_numpy(np.int64),
            "slots": counts.astype(np.int64),
            "mean_area": mean_area,
            "mean_score": mean_score,
            "top_slot_ids": [ids[starts[k] : starts[k] + min(top_k, counts[k])] for k in range(K)],
        }
    )
    dominant = np.full(K, -1, dtype=np.int64)
    purity = np.full(K, np.nan)
    if confusion is not None and confusion.size:
        dominant, purity = prototype_purity(confusion)
    names = class_names or []
    table["dominant_class"] = [names[c] if c >= 0 else "" for c in dominant]
    table["dominant_class_index"] = dominant
    table["purity"] = purity
    return table
