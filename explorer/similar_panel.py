"""The similar-segments panel of the Image tab: the collection's nearest slots to the selected
segment (explorer.image_actions.show_similar fills it). Layout only.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from explorer import image_actions
from explorer.context import AppContext


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
        title = gr.Markdown(
            image_actions.similar_heading(ctx, None, 0),
            latex_delimiters=[],
            elem_id="similar-heading",
        )
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
