"""Compare tab (app.py --compare B): the correspondence heatmap of model A (the app's index)
and model B; a pair of prototypes, picked from two dropdowns or by clicking a heatmap cell,
shows both prototypes' top segments side by side; a collection image shows both groupings side
by side with matched prototypes in the same colour. Also the API endpoints /compare_image and
/correspondence."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from explorer import actions
from explorer import comparison as comparisons
from explorer.context import AppContext
from explorer.plot_click import plotly_click_js

# a click on a heatmap cell writes "a,b:<time>" into the hidden #compare-click textbox;
# customdata is [a, b] (a typed array: plotly's bdata)
HEATMAP_CLICK_JS = plotly_click_js(
    "compare-heatmap",
    "compare-click",
    "(point.customdata && point.customdata.length >= 2 "
    "? `${point.customdata[0]},${point.customdata[1]}` : null)",
)


@dataclass
class CompareTab:
    proto_a: gr.Dropdown
    proto_b: gr.Dropdown
    image_id: gr.Number


def build(ctx: AppContext) -> CompareTab:
    comparison = ctx.comparison
    k_a, k_b = comparison.result.shape
    cfg = ctx.config
    first_a = int(comparison.order_a[0])
    first_b = comparisons.partner(comparison, first_a)
    first_b = int(comparison.order_b[0]) if first_b is None else first_b
    gr.Markdown(comparisons.summary(comparison), elem_id="compare-summary")
    gr.Plot(comparisons.heatmap(comparison), elem_id="compare-heatmap", show_label=False)
    click = gr.Textbox(visible="hidden", elem_id="compare-click")
    with gr.Row(equal_height=False, elem_classes="bottom-aligned"):
        proto_a = gr.Dropdown(
            [(f"A{p}", int(p)) for p in comparison.order_a],
            value=first_a,
            label="Model A prototype (picks its matched partner in B)",
            elem_id="compare-a",
        )
        proto_b = gr.Dropdown(
            [(f"B{p}", int(p)) for p in comparison.order_b],
            value=first_b,
            label="Model B prototype",
            elem_id="compare-b",
        )
        k = gr.Slider(1, cfg.max_k, value=cfg.default_k, step=1, label="segments shown")
    text, items_a, items_b = actions.show_pair(ctx, first_a, first_b, cfg.default_k)
    pair = gr.Markdown(text, elem_id="compare-pair")
    with gr.Row():
        gallery_a = gr.Gallery(items_a, label="A: top segments", columns=4, elem_id="compare-ga")
        gallery_b = gr.Gallery(items_b, label="B: top segments", columns=4, elem_id="compare-gb")
    first, last = ctx.index.image_id_range()
    with gr.Row(equal_height=False, elem_classes="bottom-aligned"):
        image_id = gr.Number(
            value=ctx.index.image_id_at(0),
            precision=0,
            label=f"Collection image id ({first} to {last})",
            elem_id="compare-image-id",
        )
        show = gr.Button("Compare groupings", elem_id="compare-image-btn")
    over_a, over_b, table = actions.compare_image(ctx, ctx.index.image_id_at(0))
    with gr.Row():
        overlay_a = gr.Image(over_a, label="model A", elem_id="compare-overlay-a")
        overlay_b = gr.Image(
            over_b, label="model B (matched: same colour)", elem_id="compare-overlay-b"
        )
    pairs = gr.Dataframe(
        table, label="segments of this image, matched pairs first", elem_id="compare-table"
    )

    light = {"concurrency_id": "render", "concurrency_limit": cfg.search_concurrency}

    def on_a(a, k):
        b = comparisons.partner(comparison, actions.compare_prototype(a, k_a, "A"))
        b = first_b if b is None else b
        return (b, *actions.show_pair(ctx, a, b, k))

    def on_pair(a, b, k):
        return actions.show_pair(ctx, a, b, k)

    def on_click(value, k):
        try:
            a, b = (int(v) for v in str(value).split(":")[0].split(","))
        except ValueError:
            return {}  # not a cell: every output stays as it is
        return (a, b, *actions.show_pair(ctx, a, b, k))

    def on_image(image_id):
        return actions.compare_image(ctx, image_id)

    hidden = {"api_visibility": "private", **light}
    proto_a.input(on_a, [proto_a, k], [proto_b, pair, gallery_a, gallery_b], **hidden)
    gr.on(
        [proto_b.input, k.release],
        on_pair,
        [proto_a, proto_b, k],
        [pair, gallery_a, gallery_b],
        **hidden,
    )
    click.change(on_click, [click, k], [proto_a, proto_b, pair, gallery_a, gallery_b], **hidden)
    gr.on(
        [show.click, image_id.submit], on_image, image_id, [overlay_a, overlay_b, pairs], **hidden
    )
    _endpoints(ctx)
    return CompareTab(proto_a=proto_a, proto_b=proto_b, image_id=image_id)


def _endpoints(ctx: AppContext) -> None:
    """/compare_image and /correspondence: API only (no trigger on the page)."""
    with gr.Column(visible=False):
        image_id = gr.Number(precision=0, label="image_id")
        overlay_a = gr.Image(format="png", label="overlay A")
        overlay_b = gr.Image(format="png", label="overlay B")
        pairs = gr.Dataframe(label="matched segments")
        table = gr.Dataframe(label="correspondence")

    def compare_image_endpoint(image_id):
        return actions.compare_image(ctx, image_id)

    def correspondence_endpoint():
        return comparisons.correspondence_table(ctx.comparison)

    search = {"concurrency_id": "search", "concurrency_limit": ctx.config.search_concurrency}
    gr.on(
        [],
        compare_image_endpoint,
        image_id,
        [overlay_a, overlay_b, pairs],
        api_name="compare_image",
        **search,
    )
    gr.on([], correspondence_endpoint, None, table, api_name="correspondence", **search)
