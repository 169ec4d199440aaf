"""Segments (slot rows of the index, e.g. search hits) as the app shows them: cached Figure-3
thumbnails, gallery items, prototype names and titles, the tables an API client gets."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.cache import write_atomic
from explorer.context import AppContext
from explorer.render import prototype_title, segment_thumbnail
from model.data import load_rgb

HIT_COLUMNS = ["slot_id", "image_id", "prototype", "name", "area", "score", "bbox"]


def names(ctx: AppContext) -> dict[int, str]:
    """The user's concept names, read fresh (another session may have named a prototype)."""
    return {int(k): str(v) for k, v in ctx.index.labels().items() if v}


def title(ctx: AppContext, prototype: int, labels: dict[int, str] | None = None) -> str:
    labels = names(ctx) if labels is None else labels
    return prototype_title(int(prototype), labels.get(int(prototype), ""))


def collection_image(ctx: AppContext, image_id: int):
    """-> (rgb (H, W, 3) uint8, ImageRecord). KeyError for unknown ids (clear message)."""
    record = ctx.index.image(int(image_id))
    rgb = np.asarray(load_rgb(record.path))
    if rgb.shape[:2] != record.assignment.shape:
        raise ValueError(
            f"image {image_id}: file is {rgb.shape[1]} x {rgb.shape[0]} but the index has "
            f"{record.assignment.shape[1]} x {record.assignment.shape[0]}; rebuild the index"
        )
    return rgb, record


def thumbnail(ctx: AppContext, hit: pd.Series | dict) -> Path:
    """The Figure-3 thumbnail of one slot (prototype mask in red over its image, cropped with
    context), rendered once and kept in the cache dir as <slot_id>.jpg."""
    path = ctx.thumbs_dir / f"{int(hit['slot_id'])}.jpg"
    if path.is_file():
        return path
    rgb, record = collection_image(ctx, int(hit["image_id"]))
    mask = record.assignment == int(hit["prototype"])
    image = segment_thumbnail(rgb, mask, list(hit["bbox"]), side=ctx.config.thumbnail_side)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)  # 10x faster to encode than PNG, smaller
    return write_atomic(path, buffer.getvalue())


def with_names(ctx: AppContext, hits: pd.DataFrame) -> pd.DataFrame:
    """Adds a `name` column (the prototype's user label or "") to a slot table."""
    labels = names(ctx)
    out = hits.copy()
    out["name"] = [labels.get(int(p), "") for p in out["prototype"]]
    return out


def gallery(
    ctx: AppContext, hits: pd.DataFrame, caption: Callable[[pd.Series], str]
) -> list[tuple[str, str]]:
    """Slot rows -> [(thumbnail path, caption)] for gr.Gallery."""
    return [(str(thumbnail(ctx, row)), caption(row)) for _, row in hits.iterrows()]


def hit_table(ctx: AppContext, hits: pd.DataFrame) -> pd.DataFrame:
    """The table an API client gets: slot_id, image_id, prototype, name, area, score, bbox
    (+ similarity when present), floats rounded for reading."""
    out = with_names(ctx, hits)
    columns = HIT_COLUMNS + (["similarity"] if "similarity" in out else [])
    out = out[columns].copy()
    for column in ("area", "score", "similarity"):
        if column in out:
            out[column] = out[column].astype(float).round(4)
    out["bbox"] = ["[" + ", ".join(f"{float(v):g}" for v in box) + "]" for box in out["bbox"]]
    return out


def hit_records(hits: pd.DataFrame) -> list[dict]:
    """What a gallery's gr.State keeps to map a clicked thumbnail back to its slot."""
    return [
        {"slot_id": int(r.slot_id), "image_id": int(r.image_id), "prototype": int(r.prototype)}
        for r in hits.itertuples()
    ]
