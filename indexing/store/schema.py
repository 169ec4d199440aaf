"""The index's schema in one place: the extraction's rows, the table columns, the manifest.

Rows: an image's slots come out of extraction as indexing.build.extract.ImageSlots (present
prototypes only, prototype ascending); the build collects them into a Chunk (a run of images
and their slots, saved in `<out>.partial/` for --resume), and indexing.build.writer turns the merged
Chunk into the tables below. The manifest is made here (manifest_header for the source, then
index_manifest) and checked here (manifest_problem) when an index is opened.
"""

from __future__ import annotations

import io
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np


class ImageSlots(NamedTuple):
    """One image's present slots (S of them, prototype ascending) and its assignment map.
    With a crop view, slots count the pixels of the crop only (model.counted_region)."""

    assignment: np.ndarray  # (H, W) int16 prototype of each pixel
    prototype: np.ndarray  # (S,) int64 prototypes with at least one pixel
    area: np.ndarray  # (S,) float32 fraction of the image's (counted) pixels, in (0, 1]
    score: np.ndarray  # (S,) float32 mean dots (cosine) of the prototype over its pixels
    bbox: np.ndarray  # (S, 4) int32 [x, y, w, h] of the slot's pixels, image pixels
    embedding: np.ndarray  # (S, D) float32 L2-normalised slot embedding


FORMAT = "slotcon-explorer-index"
FORMAT_VERSION = 2

# ---- table columns ---------------------------------------------------------------------------

# images.arrow, path order: an image's slots are rows [slot_start, slot_start + slot_count) of
# slots.arrow; its assignment PNG lies at map_offset (map_length bytes) of shard map_shard
IMAGE_COLUMNS = (
    "image_id",
    "path",
    "width",
    "height",
    "slot_start",
    "slot_count",
    "map_shard",
    "map_offset",
    "map_length",
)
BBOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")  # XYWH in image pixels
SLOT_COLUMNS = ("slot_id", "image_id", "prototype", "area", "score", *BBOX_COLUMNS)  # slots.arrow
# query results (top_segments, similar, ImageRecord.slots): bbox as one [x, y, w, h] list
SEGMENT_COLUMNS = ("slot_id", "image_id", "prototype", "area", "score", "bbox")
SIMILAR_COLUMNS = (*SEGMENT_COLUMNS, "similarity")  # cosine, desc
UPLOAD_SEGMENT_COLUMNS = ("prototype", "area", "score", "bbox")  # query_image's segments
# ConceptIndex.prototypes(): one row per prototype (label: the user's name)
PROTOTYPE_COLUMNS = (
    "prototype",
    "images",
    "slots",
    "mean_area",
    "mean_score",
    "label",
    "dominant_class",
    "purity",
)

# ---- extraction rows ---------------------------------------------------------------------------

# per image of a Chunk: name -> dtype
IMAGE_ARRAYS = {
    "positions": np.int64,
    "width": np.int32,
    "height": np.int32,
    "error": "<U1",
    "map_offset": np.int64,
    "map_length": np.int64,
}
# per slot (the fields of ImageSlots but its map): name -> (dtype, shape of one row; "D" = dim)
SLOT_ARRAYS = {
    "prototype": (np.int64, ()),
    "area": (np.float32, ()),
    "score": (np.float32, ()),
    "bbox": (np.int32, (4,)),
    "embedding": (np.float32, ("D",)),
}


def _empty_slots(dim: int, n: int = 0) -> dict[str, np.ndarray]:
    return {
        name: np.zeros((n, *(dim if s == "D" else s for s in shape)), dtype)
        for name, (dtype, shape) in SLOT_ARRAYS.items()
    }


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
    confusion: np.ndarray  # (K, L) int64 prototype x class pixel counts; (0, 0) without labels
    evaluated: np.ndarray  # () int64 images counted in `confusion`
    unlabelled: np.ndarray  # () int64 readable images without a usable label map

    @classmethod
    def from_images(
        cls,
        images: Sequence[tuple[int, int, int, str]],
        rows: Sequence[tuple[int, object]],
        map_length: Sequence[int],
        dim: int,
        confusion: np.ndarray,
        evaluated: int = 0,
        unlabelled: int = 0,
    ) -> Chunk:
        """images: (position, W, H, error) of every image, readable or not; rows: (position,
        ImageSlots) of the readable ones; map_length: bytes of each image's PNG (0 when
        skipped), in the order of `images`, stored back to back."""
        length = np.asarray(map_length, dtype=np.int64).reshape(-1)
        slots = _empty_slots(dim)
        if rows:
            slots = {
                name: np.concatenate([getattr(r, name) for _, r in rows]).astype(dtype)
                for name, (dtype, _) in SLOT_ARRAYS.items()
            }
        return cls(
            positions=np.array([p for p, *_ in images], dtype=np.int64),
            width=np.array([w for _, w, _, _ in images], dtype=np.int32),
            height=np.array([h for _, _, h, _ in images], dtype=np.int32),
            error=np.array([e for *_, e in images], dtype=str),
            map_offset=np.cumsum(length) - length,
            map_length=length,
            slot_position=np.array([p for p, r in rows for _ in r.prototype], dtype=np.int64),
            **slots,
            confusion=confusion,
            evaluated=np.int64(evaluated),
            unlabelled=np.int64(unlabelled),
        )

    def to_npz(self) -> bytes:
        """The chunk as an .npz file's bytes (Chunk.load reads it back)."""
        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.asarray(getattr(self, name)) for name in _CHUNK_FIELDS})
        return buffer.getvalue()

    @classmethod
    def load(cls, path: Path) -> Chunk:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{name: data[name] for name in _CHUNK_FIELDS})

    @classmethod
    def concatenate(cls, chunks: list[Chunk], dim: int, shape: tuple[int, int]) -> Chunk:
        """All chunks in one, images ordered by position (slots follow their images)."""
        names = [*IMAGE_ARRAYS, "slot_position", *SLOT_ARRAYS]
        if chunks:
            cat = {name: np.concatenate([getattr(c, name) for c in chunks]) for name in names}
        else:
            cat = {name: np.zeros(0, dtype) for name, dtype in IMAGE_ARRAYS.items()}
            cat.update(slot_position=np.zeros(0, np.int64), **_empty_slots(dim))
        order = np.argsort(cat["positions"], kind="stable")
        slot_order = np.argsort(cat["slot_position"], kind="stable")  # keeps prototype order
        for name in IMAGE_ARRAYS:
            cat[name] = cat[name][order]
        for name in ("slot_position", *SLOT_ARRAYS):
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


_CHUNK_FIELDS = tuple(Chunk.__dataclass_fields__)

# ---- manifest ----------------------------------------------------------------------------------


def model_entry(
    *,
    arch: str,
    width: float,
    num_prototypes: int,
    dim: int,
    input_size: int,
    stride: int,
    config: dict,
) -> dict:
    """The manifest's "model": K, D, the input size and stride, and the full model config."""
    return {
        "config": config,
        "arch": arch,
        "width": width,
        "num_prototypes": num_prototypes,
        "dim": dim,
        "input_size": input_size,
        "stride": stride,
    }


def manifest_header(
    *,
    checkpoint_path: str,
    checkpoint_sha256: str,
    model: dict,
    image_root: str | Path,
    annotations: Sequence[str | Path] = (),
    class_names: Sequence[str] = (),
    class_is_thing: Sequence[bool] = (),
    build: dict | None = None,
) -> dict:
    """The manifest's description of an index's source (indexing.build.writer.write_index adds the
    format, counts, faiss and versions): checkpoint {path, sha256}, model (model_entry),
    image_root (absolute), annotations (absolute paths; image ids come from them when given,
    else 1..N in path order), class_names, class_is_thing, build (how it was made)."""
    annotations = [str(Path(p).absolute()) for p in annotations]
    return {
        "checkpoint": {"path": checkpoint_path, "sha256": checkpoint_sha256},
        "model": model,
        "image_root": str(Path(image_root).absolute()),
        "annotations": annotations,
        "image_ids": "annotations" if annotations else "path order",
        "class_names": list(class_names),
        "class_is_thing": list(class_is_thing),
        "build": dict(build or {}),
    }


def index_manifest(header: dict, counts: dict, skipped: list[dict], faiss_info: dict) -> dict:
    """The whole manifest.json: format, version, the source (manifest_header), counts {images,
    slots, skipped}, skipped [{path, reason}], faiss (indexing.store.faiss_index.build_faiss's
    info) and the library versions."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **header,
        "counts": counts,
        "skipped": skipped,
        "faiss": faiss_info,
        "versions": _versions(),
    }


def _versions() -> dict:
    import faiss
    import pandas as pd
    import pyarrow as pa

    versions = {
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
    }
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    return versions


# what the readers of an index take from its manifest: key -> type (sub-dicts: their keys)
_REQUIRED = {
    "checkpoint": {"sha256": str},
    "model": {"num_prototypes": int, "dim": int, "input_size": int},
    "image_root": str,
    "faiss": {},
}
_OPTIONAL = {"class_names": list, "class_is_thing": list, "annotations": list}


def manifest_problem(manifest: dict) -> str:
    """What is wrong with a manifest's fields for its readers ("" when nothing); names the
    key."""

    def describe(value: object) -> str:
        return "null" if value is None else f"a {type(value).__name__} ({value!r:.40})"

    def check(value: object, kind: type, key: str) -> str:
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            return "" if ok else f"'{key}' is {describe(value)}, expected an integer >= 1"
        ok = isinstance(value, kind) and (kind is not str or value)
        return "" if ok else f"'{key}' is {describe(value)}, expected a {kind.__name__}"

    for key, spec in _REQUIRED.items():
        if key not in manifest:
            return f"'{key}' is missing"
        if problem := check(manifest[key], dict if isinstance(spec, dict) else spec, key):
            return problem
        for sub, kind in spec.items() if isinstance(spec, dict) else ():
            if sub not in manifest[key]:
                return f"'{key}.{sub}' is missing"
            if problem := check(manifest[key][sub], kind, f"{key}.{sub}"):
                return problem
    for key, kind in _OPTIONAL.items():
        if key in manifest and not isinstance(manifest[key], kind):
            return check(manifest[key], kind, key)
    return ""
