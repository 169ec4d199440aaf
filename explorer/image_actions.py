"""What a click or an API call does to an image (the Image tab, the API): open a collection
image or an upload, draw it, find the segments most similar to the selected one. Plain functions
of the AppContext and the user's inputs, as in explorer.concept_actions.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import gradio as gr
import numpy as np
import pandas as pd

from explorer import thumbnails
from explorer import view as views
from explorer.concept_actions import first_prototype
from explorer.context import AppContext
from explorer.render import markdown_text
from explorer.uploads import UploadRejected, read_upload
from explorer.view import ImageView
from indexing.store.schema import SIMILAR_COLUMNS


class ImageShown(NamedTuple):
    """Everything the Image tab shows for a view (ImageTab.outputs' order)."""

    view: ImageView  # the tab's state
    overlay: str  # PNG path of the grouping overlay
    legend: str  # HTML
    segments: pd.DataFrame
    status: str  # markdown
    similar_heading: str
    similar_gallery: list
    similar_hits: list[dict]


def present(
    ctx: AppContext, view: ImageView, opacity: float, k: int, same_prototype: bool
) -> ImageShown:
    similar = show_similar(ctx, view, k, same_prototype)
    return ImageShown(
        view=view,
        overlay=views.overlay_file(ctx, views.draw(ctx, view, opacity)),
        legend=views.legend(ctx, view),
        segments=views.segment_table(ctx, view),
        status=views.status(ctx, view),
        similar_heading=similar.heading,
        similar_gallery=similar.gallery,
        similar_hits=similar.hits,
    )


def initial_view(ctx: AppContext) -> ImageView:
    """The first prototype's best segment, selected in its image (or the first image)."""
    prototype = first_prototype(ctx)
    hits = ctx.index.top_segments(prototype, 1)
    if len(hits):
        return views.open_collection(ctx, int(hits["image_id"].iloc[0]), prototype)
    return views.open_collection(ctx, ctx.index.image_id_at(0))


def open_image(ctx: AppContext, image_id, selected: int | None = None) -> ImageView:
    try:
        image_id = int(image_id)
        return views.open_collection(ctx, image_id, selected)
    except (TypeError, ValueError, KeyError) as error:
        raise unknown_image(ctx, image_id) from error


def unknown_image(ctx: AppContext, image_id) -> gr.Error:
    """The message for an image id the collection does not hold."""
    first, last = ctx.index.image_id_range()
    return gr.Error(
        f"No image {image_id!r} in this collection ({ctx.index.num_images} images, ids {first} "
        f"to {last})."
    )


def open_hit(ctx: AppContext, hits: list[dict], index: int) -> ImageView:
    """A clicked gallery thumbnail -> its image with the thumbnail's segment selected."""
    hit = hits[index]
    return open_image(ctx, hit["image_id"], hit["prototype"])


def upload(ctx: AppContext, path: str | None, progress=None) -> ImageView:
    """Validate and group an uploaded file. Raises UploadRejected with a message for the user."""
    if ctx.encoder is None:
        raise UploadRejected(
            "Uploads need the model: start the app with --checkpoint FILE (the checkpoint the "
            "index was built with)."
        )
    step = progress or (lambda *a, **k: None)
    step(0.05, desc="checking the file")
    name = Path(str(path)).name if path else "image"
    accepted = read_upload(path, ctx.config.limits)
    step(0.3, desc="grouping with the model")
    try:
        return views.open_upload(ctx, accepted.image, name, accepted.original_size)
    except (RuntimeError, ValueError) as error:  # e.g. out of memory on a GPU
        raise UploadRejected(f"The model could not process this image ({error}).") from error


# ---- similar segments ------------------------------------------------------------------------


def similar_segments(
    ctx: AppContext, view: ImageView | None, k: int, same_prototype: bool
) -> pd.DataFrame:
    """The top-k collection slots most similar (cosine) to the view's selected segment, with a
    `similarity` column; empty when nothing is selected."""
    if view is None or view.selected is None:
        return pd.DataFrame(columns=list(SIMILAR_COLUMNS))
    k = int(np.clip(int(k), 1, ctx.config.max_k))
    prototype = view.selected if same_prototype else None
    if view.source == "collection":
        slot_id = view.slot_id(view.selected)
        return ctx.index.similar(slot_id=slot_id, k=k, prototype=prototype)
    vector = np.asarray(view.slots[view.selected], dtype=np.float32)
    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return ctx.index.similar(vector=vector, k=k, exclude_same_image=False, prototype=prototype)


def similar_caption(ctx: AppContext, labels: dict[int, str]):
    def write(row: pd.Series) -> str:
        name = thumbnails.title(ctx, int(row.prototype), labels)
        return f"{float(row.similarity):.2f} · {name} · img {int(row.image_id)}"

    return write


def similar_heading(ctx: AppContext, view: ImageView | None, found: int) -> str:
    if view is None or view.selected is None:
        return "#### Similar segments\nClick a segment in the image to find similar ones."
    name = markdown_text(thumbnails.title(ctx, view.selected))  # user text, shown as text
    where = f"image {view.image_id}" if view.source == "collection" else "the uploaded image"
    if found == 0:
        return f"#### Similar to {name} in {where}\nNo similar segments found."
    return (
        f"#### {found} segments most similar to {name} in {where}\n"
        "Cosine similarity of slot embeddings; click one to open its image."
    )


class SimilarShown(NamedTuple):
    heading: str  # markdown
    gallery: list
    hits: list[dict]


def show_similar(
    ctx: AppContext, view: ImageView | None, k: int, same_prototype: bool
) -> SimilarShown:
    hits = similar_segments(ctx, view, k, same_prototype)
    items = thumbnails.gallery(ctx, hits, similar_caption(ctx, thumbnails.names(ctx)))
    return SimilarShown(similar_heading(ctx, view, len(hits)), items, thumbnails.hit_records(hits))
