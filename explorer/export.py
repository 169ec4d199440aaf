"""Downloads: the concept table as CSV, a prototype's top segments as COCO-style JSON.

Files are written atomically (explorer.cache.write_atomic) into a folder the app serves (its
cache dir), under names that say what they hold.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pycocotools import mask as mask_utils

from explorer.cache import write_atomic


@dataclass(frozen=True)
class ExportSegment:
    """One segment to export: the prototype's mask in one collection image."""

    slot_id: int
    image_id: int
    file_name: str  # relative to the collection's image root
    width: int
    height: int
    mask: np.ndarray  # (H, W) bool
    score: float
    bbox: Sequence[float]  # [x, y, w, h] in image pixels


# a text cell starting with one of these runs as a formula in a spreadsheet (OWASP CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\0")


def spreadsheet_safe(value):
    """A text cell that a spreadsheet would run, with a leading single quote (OWASP's advice:
    shown as text); anything else unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def concept_table_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write the concept table (one row per prototype) as UTF-8 CSV; text cells that start
    like a formula (names, class names) are neutralised with spreadsheet_safe."""
    table = table.copy()
    for column in table.columns:
        if not pd.api.types.is_numeric_dtype(table[column]):
            table[column] = table[column].map(spreadsheet_safe)
    # every text cell quoted (RFC 4180): a CR inside a class name must not end the row
    text = table.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)
    return write_atomic(path, text.encode("utf-8"))


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO compressed RLE {"size": [H, W], "counts": str} (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of encode_rle: -> (H, W) bool."""
    counts = rle["counts"]
    encoded = {
        "size": rle["size"],
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    return mask_utils.decode(encoded).astype(bool)


def coco_document(
    prototype: int, name: str, segments: Iterable[ExportSegment], description: str = ""
) -> dict:
    """COCO-style dict: images, one category (the prototype), one annotation per segment with
    an RLE mask, bbox [x, y, w, h], area (pixels) and the prototype score."""
    images, annotations = [], []
    for i, seg in enumerate(segments, start=1):
        images.append(
            {
                "id": seg.image_id,
                "file_name": seg.file_name,
                "width": seg.width,
                "height": seg.height,
            }
        )
        annotations.append(
            {
                "id": i,
                "image_id": seg.image_id,
                "category_id": prototype,
                "segmentation": encode_rle(seg.mask),
                "area": int(seg.mask.sum()),
                "bbox": [float(v) for v in seg.bbox],
                "iscrowd": 0,
                "score": float(seg.score),
                "slot_id": int(seg.slot_id),
            }
        )
    return {
        "info": {"description": description or f"top segments of prototype {prototype}"},
        "images": images,
        "categories": [{"id": prototype, "name": name or f"prototype {prototype}"}],
        "annotations": annotations,
    }


def write_coco_json(document: dict, path: Path) -> Path:
    return write_atomic(path, json.dumps(document).encode("utf-8"))
