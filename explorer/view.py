"""One user's current image (a collection image or an upload), its segments and the selection.

An ImageView lives in a gr.State. Collection images keep only ids (pixels are re-read from the
index when drawn); uploads keep their reduced RGB image, assignment map and slot vectors, since
they exist nowhere else.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from PIL import Image

from explorer import thumbnails
from explorer.cache import prune_oldest, write_atomic
from explorer.context import AppContext
from explorer.render import (
    LegendEntry,
    display_scale,
    enlarge,
    grouping_overlay,
    legend_html,
    markdown_text,
)


@dataclass(frozen=True)
class ImageView:
    source: str  # "collection" or "upload"
    image_id: int | None  # collection images only
    title: str  # how the status line names the image
    segments: pd.DataFrame  # prototype, area, score, bbox (+ slot_id for collection images)
    selected: int | None = None  # selected prototype (its segment is highlighted)
    rgb: np.ndarray | None = None  # upload only: (H, W, 3) uint8
    assignment: np.ndarray | None = None  # upload only: (H, W) int16
    slots: np.ndarray | None = None  # upload only: (K, D) float32 slot vectors

    def slot_id(self, prototype: int) -> int:
        rows = self.segments[self.segments["prototype"] == prototype]
        if self.source != "collection" or rows.empty:
            raise KeyError(f"prototype {prototype} has no slot in this image")
        return int(rows["slot_id"].iloc[0])

    def with_selection(self, prototype: int | None) -> ImageView:
        if prototype is not None and prototype not in set(self.segments["prototype"]):
            prototype = None
        return replace(self, selected=None if prototype is None else int(prototype))


def open_collection(ctx: AppContext, image_id: int, selected: int | None = None) -> ImageView:
    """A collection image by id (KeyError with a clear message for unknown ids); `selected`
    defaults to its largest segment."""
    record = ctx.index.image(int(image_id))
    table = record.slots.sort_values("area", ascending=False).reset_index(drop=True)
    view = ImageView(
        source="collection",
        image_id=int(image_id),
        title=f"image {int(image_id)} ({record.path.name}, {record.width} x {record.height})",
        segments=table,
    )
    default = int(table["prototype"].iloc[0]) if len(table) else None
    return view.with_selection(default if selected is None else selected)


def random_image_id(ctx: AppContext, rng: random.Random | None = None) -> int:
    return ctx.index.image_id_at((rng or random).randrange(ctx.index.num_images))


def open_upload(
    ctx: AppContext, image: Image.Image, name: str, original_size: tuple[int, int] | None = None
) -> ImageView:
    """Group an (already validated, reduced) RGB upload with the encoder, through the index
    (which checks that the encoder is its model and uses its input size)."""
    if ctx.encoder is None:
        raise RuntimeError("this app runs without a checkpoint")
    result = ctx.index.query_image(image, ctx.encoder, k=0)  # the grouping; no searches
    size = f"{image.width} x {image.height}"
    if original_size and tuple(original_size) != image.size:
        size += f", reduced from {original_size[0]} x {original_size[1]}"
    view = ImageView(
        source="upload",
        image_id=None,
        title=f"upload {name} ({size})",
        segments=result.segments,
        rgb=np.asarray(image, dtype=np.uint8),
        assignment=result.grouping.assignment,
        slots=result.grouping.slots,
    )
    first = int(result.segments["prototype"].iloc[0]) if len(result.segments) else None
    return view.with_selection(first)


def pixels_of(ctx: AppContext, view: ImageView) -> tuple[np.ndarray, np.ndarray]:
    """-> (rgb (H, W, 3) uint8, assignment (H, W)) of the view's image."""
    if view.source == "upload":
        return view.rgb, view.assignment
    return thumbnails.image_pixels(ctx, view.image_id)


def prototype_at(ctx: AppContext, view: ImageView, x: int, y: int) -> int:
    """The prototype under pixel (x, y) of the drawn overlay (x right, y down; the overlay of a
    small image is enlarged by display_scale), clipped inside the image."""
    _, assignment = pixels_of(ctx, view)
    H, W = assignment.shape
    factor = display_scale(H, W)
    row, col = int(y) // factor, int(x) // factor
    return int(assignment[min(max(row, 0), H - 1), min(max(col, 0), W - 1)])


def draw(ctx: AppContext, view: ImageView, opacity: float, for_screen: bool = True) -> np.ndarray:
    """The grouping overlay (H * f, W * f, 3) uint8 with the selected segment highlighted;
    f = display_scale(H, W) enlarges small images so that boundaries stay crisp on screen
    (f = 1 with for_screen=False)."""
    rgb, assignment = pixels_of(ctx, view)
    factor = display_scale(*assignment.shape) if for_screen else 1
    return grouping_overlay(
        enlarge(rgb, factor),
        enlarge(assignment, factor),
        ctx.colours,
        opacity,
        highlight=view.selected,
    )


def overlay_file(ctx: AppContext, overlay: np.ndarray) -> str:
    """`overlay` as a PNG in the served cache, named by its content and written atomically.

    Returning the array would let Gradio write it to a path named by its content, in place: two
    users drawing the same overlay at once then rewrite the file while the other's download
    streams it (seen under load as a response shorter than its Content-Length). A rename never
    changes a file that is being read."""
    digest = hashlib.sha256(overlay.tobytes() + repr(overlay.shape).encode()).hexdigest()[:32]
    path = ctx.overlays_dir / f"{digest}.png"
    try:
        os.utime(path)  # handed out again: now the newest, the last that pruning deletes
    except FileNotFoundError:
        buffer = io.BytesIO()
        Image.fromarray(overlay).save(buffer, format="PNG", compress_level=1)  # fast; lossless
        write_atomic(path, buffer.getvalue())
        prune_oldest(ctx.overlays_dir, keep=ctx.config.max_overlay_files, spare=path)
    return str(path)


def legend(ctx: AppContext, view: ImageView) -> str:
    labels = thumbnails.names(ctx)
    entries = [
        LegendEntry(
            int(r.prototype),
            labels.get(int(r.prototype), ""),
            tuple(int(c) for c in ctx.colours[int(r.prototype)]),
            float(r.area),
        )
        for r in view.segments.itertuples()
    ]
    return legend_html(entries, view.selected)


def segment_table(ctx: AppContext, view: ImageView) -> pd.DataFrame:
    """Display table of the view's segments: prototype, name, area %, score."""
    labels = thumbnails.names(ctx)
    return pd.DataFrame(
        {
            "prototype": view.segments["prototype"].astype(int),
            "name": [labels.get(int(p), "") for p in view.segments["prototype"]],
            "area %": (100 * view.segments["area"].astype(float)).round(1),
            "score": view.segments["score"].astype(float).round(3),
        }
    )


def status(ctx: AppContext, view: ImageView) -> str:
    """Markdown line naming the image and the selected segment (names shown as text)."""
    title = thumbnails.title(ctx, view.selected) if view.selected is not None else ""
    selected = f" · selected **{markdown_text(title)}**" if title else ""
    return (
        f"**{markdown_text(view.title)}** · {len(view.segments)} segments{selected} · "
        "click the image to select a segment"
    )
