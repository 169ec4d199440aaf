"""Named API endpoints for gradio_client: /group_image, /top_segments, /similar.

They have no place on the page: their components sit in a hidden column and the events have no
trigger (gr.on with an empty trigger list), so only API calls run them. Bad input raises
gr.Error with a clear message; the client gets it as an AppError. The number arguments reach
the functions as sent (preprocess=False): gr.Number's own conversion fails on text, NaN and
infinity with an error that a client sees only as "Error".
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from explorer import thumbnails
from explorer import view as views
from explorer.concept_actions import parse_prototype, segment_caption, top_segments
from explorer.context import AppContext
from explorer.image_actions import similar_caption, upload
from explorer.uploads import UploadRejected


def group_image(ctx: AppContext, path: str | None):
    """An image file -> (overlay PNG path (image size), segments DataFrame[prototype, name,
    area %, score, bbox])."""
    try:
        view = upload(ctx, path)
    except UploadRejected as error:
        raise gr.Error(str(error)) from error
    view = view.with_selection(None)
    table = views.segment_table(ctx, view)
    table["bbox"] = ["[" + ", ".join(str(int(v)) for v in b) + "]" for b in view.segments["bbox"]]
    return views.overlay_file(ctx, views.draw(ctx, view, 0.5, for_screen=False)), table


def _k(ctx: AppContext, k) -> int:
    try:
        return int(np.clip(int(k), 1, ctx.config.max_k))
    except (TypeError, ValueError, OverflowError) as error:
        raise gr.Error(f"k must be a whole number, not {k!r}") from error


def top_segments_api(ctx: AppContext, prototype, k):
    """(prototype, k) -> (gallery of Figure-3 thumbnails, table of the slots)."""
    prototype = parse_prototype(ctx, prototype)
    hits = top_segments(ctx, prototype, _k(ctx, k))
    items = thumbnails.gallery(ctx, hits, segment_caption)
    return items, thumbnails.hit_table(ctx, hits)


def similar_api(ctx: AppContext, slot_id, k):
    """(slot_id, k) -> (gallery, table with similarity) of the most similar collection slots."""
    try:
        slot = ctx.index.slot(int(slot_id))
    except (TypeError, ValueError, OverflowError, KeyError) as error:
        raise gr.Error(f"No slot {slot_id!r} in this index.") from error
    hits = ctx.index.similar(slot_id=int(slot["slot_id"]), k=_k(ctx, k))
    items = thumbnails.gallery(ctx, hits, similar_caption(ctx, thumbnails.names(ctx)))
    return items, thumbnails.hit_table(ctx, hits)


def build(ctx: AppContext) -> None:
    cfg = ctx.config
    with gr.Column(visible=False):
        file = gr.File(type="filepath", label="image")
        overlay = gr.Image(format="png", label="overlay")
        segment_rows = gr.Dataframe(label="segments")
        prototype = gr.Number(precision=0, label="prototype")
        slot_id = gr.Number(precision=0, label="slot_id")
        k = gr.Number(value=cfg.default_k, precision=0, label="k")
        gallery = gr.Gallery(label="segments")
        hits = gr.Dataframe(label="table")

    def group_image_endpoint(image):
        return group_image(ctx, image)

    def top_segments_endpoint(prototype, k):
        return top_segments_api(ctx, prototype, k)

    def similar_endpoint(slot_id, k):
        return similar_api(ctx, slot_id, k)

    model = {"concurrency_id": "model", "concurrency_limit": cfg.model_concurrency}
    search = {
        "concurrency_id": "search",
        "concurrency_limit": cfg.search_concurrency,
        "preprocess": False,  # numbers as sent: the functions give the reason for bad ones
    }
    gr.on([], group_image_endpoint, file, [overlay, segment_rows], api_name="group_image", **model)
    gr.on(
        [],
        top_segments_endpoint,
        [prototype, k],
        [gallery, hits],
        api_name="top_segments",
        **search,
    )
    gr.on([], similar_endpoint, [slot_id, k], [gallery, hits], api_name="similar", **search)
