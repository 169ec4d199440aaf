"""Segments (slot rows of the index, e.g. search hits) as the app shows them: cached Figure-3
thumbnails, gallery items, prototype names and titles, the tables an API client gets."""

from __future__ import annotations

import io
import threading
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


def image_pixels(ctx: AppContext, image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (rgb (H, W, 3) uint8, assignment (H, W)) of a collection image, without its slot
    table. KeyError for unknown ids (clear message); ValueError when the file no longer has
    the indexed size."""
    assignment = ctx.index.assignment(int(image_id))
    rgb = np.asarray(load_rgb(ctx.index.image_path(int(image_id))))
    if rgb.shape[:2] != assignment.shape:
        raise ValueError(
            f"image {image_id}: file is {rgb.shape[1]} x {rgb.shape[0]} but the index has "
            f"{assignment.shape[1]} x {assignment.shape[0]}; rebuild the index"
        )
    return rgb, assignment


def thumbnail(ctx: AppContext, hit: pd.Series | dict) -> Path:
    """The Figure-3 thumbnail of one slot (prototype mask in red over its image, cropped with
    context), rendered once and kept in the cache dir as <slot_id>.jpg, which the page loads
    as a file (never re-rendered per request)."""
    path = ctx.thumbs_dir / f"{int(hit['slot_id'])}.jpg"
    if path.is_file():
        return path
    rgb, assignment = image_pixels(ctx, int(hit["image_id"]))
    mask = assignment == int(hit["prototype"])
    image = segment_thumbnail(rgb, mask, list(hit["bbox"]), side=ctx.config.thumbnail_side)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)  # 10x faster to encode than PNG, smaller
    return write_atomic(path, buffer.getvalue())


def warm_top_segments(ctx: AppContext, k: int, stop: threading.Event | None = None) -> int:
    """Render the thumbnails of every prototype's top-k segments not rendered yet (what the
    Concepts tab shows first), so that opening a prototype only hands out files; -> how many
    were rendered. `stop` ends it early. An image that cannot be read is skipped: the request
    that shows it reports the error."""
    rendered = 0
    for prototype in range(ctx.num_prototypes):
        for hit in ctx.index.top_segments(prototype, k).to_dict("records"):
            if stop is not None and stop.is_set():
                return rendered
            if (ctx.thumbs_dir / f"{int(hit['slot_id'])}.jpg").is_file():
                continue
            try:
                thumbnail(ctx, hit)
                rendered += 1
            except (OSError, ValueError, KeyError):
                continue
    return rendered


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
