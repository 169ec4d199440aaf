"""Similar segments: the collection's nearest slots to the segment selected in the Image tab.

A collection segment is looked up by its slot id, an uploaded image's segment by its slot
vector; results are Figure-3 thumbnails captioned with similarity and prototype.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
import pandas as pd

from explorer import segments
from explorer.context import AppContext
from explorer.render import markdown_text
from explorer.view import ImageView
from indexing.schema import SIMILAR_COLUMNS


def query(ctx: AppContext, view: ImageView | None, k: int, same_prototype: bool) -> pd.DataFrame:
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


def caption(ctx: AppContext, labels: dict[int, str]):
    def write(row: pd.Series) -> str:
        name = segments.title(ctx, int(row.prototype), labels)
        return f"{float(row.similarity):.2f} · {name} · img {int(row.image_id)}"

    return write


def heading(ctx: AppContext, view: ImageView | None, found: int) -> str:
    if view is None or view.selected is None:
        return "#### Similar segments\nClick a segment in the image to find similar ones."
    name = markdown_text(segments.title(ctx, view.selected))  # user text, shown as text
    where = f"image {view.image_id}" if view.source == "collection" else "the uploaded image"
    if found == 0:
        return f"#### Similar to {name} in {where}\nNo similar segments found."
    return (
        f"#### {found} segments most similar to {name} in {where}\n"
        "Cosine similarity of slot embeddings; click one to open its image."
    )


def show(ctx: AppContext, view: ImageView | None, k: int, same_prototype: bool):
    """-> (heading markdown, gallery items, hit records)."""
    hits = query(ctx, view, k, same_prototype)
    items = segments.gallery(ctx, hits, caption(ctx, segments.names(ctx)))
    return heading(ctx, view, len(hits)), items, segments.hit_records(hits)


@dataclass
class SimilarPanel:
    heading: gr.Markdown
    same_prototype: gr.Checkbox
    k: gr.Slider
    gallery: gr.Gallery
    hits: gr.State  # [{slot_id, image_id, prototype}] of the thumbnails shown

    @property
    def outputs(self) -> list:
        return [self.heading, self.gallery, self.hits]


def build(ctx: AppContext) -> SimilarPanel:
    with gr.Row(equal_height=True):
        title = gr.Markdown(heading(ctx, None, 0), latex_delimiters=[], elem_id="similar-heading")
        same = gr.Checkbox(label="same prototype only", value=False, scale=0, min_width=180)
        k = gr.Slider(
            1,
            ctx.config.max_k,
            value=ctx.config.default_k,
            step=1,
            label="k",
            scale=0,
            min_width=220,
        )
    gallery = gr.Gallery(
        label="Similar segments",
        show_label=False,
        columns=6,
        height="auto",
        object_fit="contain",
        allow_preview=False,
        elem_id="similar-gallery",
    )
    return SimilarPanel(title, same, k, gallery, gr.State([]))
