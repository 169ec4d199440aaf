"""An index and the model beside it: the checks that a checkpoint or an encoder is the index's
(IndexMismatchError), and an image from outside the collection (an upload) grouped exactly as
the build grouped the collection's images (same input size and view, indexing.store.rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image

from indexing.store.directory import sha256_file
from indexing.store.rows import Geometry, extract_image
from indexing.store.schema import UPLOAD_SEGMENT_COLUMNS, ImageSlots
from indexing.store.views import View
from model.encoder import ImageGrouping, SlotConEncoder
from model.transforms import ImageTransform, Preprocessed, counted_region


class IndexMismatchError(ValueError):
    """The index was built with another checkpoint (or model) than the one given."""


class QueryResult(NamedTuple):
    grouping: ImageGrouping  # the uploaded image's grouping (assignment (H, W), slots (K, D))
    segments: pd.DataFrame  # [prototype, area, score, bbox] of present prototypes, area desc
    neighbours: dict[int, pd.DataFrame]  # prototype -> similar() of its slot in the collection


def check_checkpoint(manifest: dict, checkpoint: str | Path, root: Path) -> None:
    """IndexMismatchError unless `checkpoint`'s SHA-256 is the one the index was built with."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    expected = manifest["checkpoint"]["sha256"]
    actual = sha256_file(path)
    if actual != expected:
        raise IndexMismatchError(
            f"the index {root} was built with another checkpoint: index SHA-256 "
            f"{expected[:12]}... ({Path(manifest['checkpoint'].get('path', '?')).name}), "
            f"{path.name} has SHA-256 {actual[:12]}...; rebuild the index with "
            "`python -m indexing build` or open it with its own checkpoint"
        )


def check_encoder(
    encoder: SlotConEncoder, prototypes: np.ndarray, root: Path, checkpoint_sha256: str
) -> None:
    """IndexMismatchError unless the encoder has the index's prototypes (K, D) (same model)."""
    vectors = encoder.prototypes.cpu().numpy()
    if vectors.shape != prototypes.shape or not np.allclose(vectors, prototypes, atol=1e-4):
        raise IndexMismatchError(
            f"the encoder ({vectors.shape[0]} prototypes of size {vectors.shape[1]}) is not "
            f"the model the index {root} was built with (checkpoint SHA-256 "
            f"{checkpoint_sha256[:12]}...)"
        )


def upload_rows(
    manifest: dict, image: Image.Image, encoder: SlotConEncoder
) -> tuple[ImageSlots, Preprocessed]:
    """One RGB image through the extraction of the index of `manifest`: its slot rows and
    preprocessing."""
    build = manifest.get("build", {})
    view = View(**build["view"]) if build.get("view") else None
    transform = ImageTransform(encoder.stride, int(manifest["model"]["input_size"]))
    return extract_image(encoder, image, Geometry(transform, view), cell_score=view is not None)


def upload_segments(rows: ImageSlots) -> pd.DataFrame:
    """DataFrame[prototype, area, score, bbox] of an image's slot rows, area desc."""
    segments = pd.DataFrame(
        {
            "prototype": rows.prototype,
            "area": rows.area,
            "score": rows.score,
            "bbox": rows.bbox.astype(np.int64).tolist(),
        },
        columns=list(UPLOAD_SEGMENT_COLUMNS),
    )
    segments = segments.sort_values(["area", "prototype"], ascending=[False, True])
    return segments.reset_index(drop=True)


def upload_grouping(rows: ImageSlots, info: Preprocessed, stride: int, K: int) -> ImageGrouping:
    """The ImageGrouping of an image's extracted slot rows (K prototypes): pixels counted where
    extraction counts them (model.counted_region), the rows' scores (NaN where a prototype is
    absent) and their L2-normalised embeddings as slot vectors (0 where absent)."""
    x0, y0, x1, y1 = counted_region(info, stride)
    pixels = np.bincount(rows.assignment[y0:y1, x0:x1].ravel(), minlength=K).astype(np.int64)
    score = np.full(K, np.nan, np.float32)
    score[rows.prototype] = rows.score
    slots = np.zeros((K, rows.embedding.shape[1]), np.float32)
    slots[rows.prototype] = rows.embedding
    return ImageGrouping(rows.assignment, pixels, score, slots)
