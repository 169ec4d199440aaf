"""Compare tab (app.py --compare B): the correspondence heatmap of model A (the app's index)
and model B; a pair of prototypes, picked from two dropdowns or by clicking a heatmap cell,
shows both prototypes' top segments side by side; a collection image shows both groupings side
by side with matched prototypes in the same colour. Also the API endpoints /compare_image and
/correspondence."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from explorer import compare_actions
from explorer import comparison as comparisons
from explorer.comparison import Comparison
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


@dataclass
class _PairSection:
    """Two dropdowns (or a heatmap click) pick a pair; both prototypes' top segments."""

    click: gr.Textbox  # the heatmap click bridge
    proto_a: gr.Dropdown
    proto_b: gr.Dropdown
    k: gr.Slider
    pair: gr.Markdown
    gallery_a: gr.Gallery
    gallery_b: gr.Gallery


@dataclass
class _ImageSection:
    """A collection image's two groupings side by side and its matched segments."""

    image_id: gr.Number
    show: gr.Button
    overlay_a: gr.Image
    overlay_b: gr.Image
    pairs: gr.Dataframe


def build(ctx: AppContext, comparison: Comparison) -> CompareTab:
    """Lay out and wire the tab for `comparison` (model B beside the app's model A)."""
    first_a = int(comparison.order_a[0])
    first_b = comparisons.partner(comparison, first_a)
    first_b = int(comparison.order_b[0]) if first_b is None else first_b
    gr.Markdown(comparisons.summary(comparison), elem_id="compare-summary")
    gr.Plot(comparisons.heatmap(comparison), elem_id="compare-heatmap", show_label=False)
    pair = _pair_section(ctx, comparison, first_a, first_b)
    image = _image_section(ctx, comparison)
    _wire(ctx, comparison, pair, image, first_b)
    _endpoints(ctx, comparison)
    return CompareTab(proto_a=pair.proto_a, proto_b=pair.proto_b, image_id=image.image_id)


def _pair_section(
    ctx: AppContext, comparison: Comparison, first_a: int, first_b: int
) -> _PairSection:
    cfg = ctx.config
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
    text, items_a, items_b = compare_actions.show_pair(
        ctx, comparison, first_a, first_b, cfg.default_k
    )
    pair = gr.Markdown(text, elem_id="compare-pair")
    with gr.Row():
        gallery_a = gr.Gallery(items_a, label="A: top segments", columns=4, elem_id="compare-ga")
        gallery_b = gr.Gallery(items_b, label="B: top segments", columns=4, elem_id="compare-gb")
    return _PairSection(click, proto_a, proto_b, k, pair, gallery_a, gallery_b)


def _image_section(ctx: AppContext, comparison: Comparison) -> _ImageSection:
    first, last = ctx.index.image_id_range()
    with gr.Row(equal_height=False, elem_classes="bottom-aligned"):
        image_id = gr.Number(
            value=ctx.index.image_id_at(0),
            precision=0,
            label=f"Collection image id ({first} to {last})",
            elem_id="compare-image-id",
        )
        show = gr.Button("Compare groupings", elem_id="compare-image-btn")
    over_a, over_b, table = compare_actions.compare_image(ctx, comparison, ctx.index.image_id_at(0))
    with gr.Row():
        overlay_a = gr.Image(over_a, label="model A", elem_id="compare-overlay-a")
        overlay_b = gr.Image(
            over_b, label="model B (matched: same colour)", elem_id="compare-overlay-b"
        )
    pairs = gr.Dataframe(
        table, label="segments of this image, matched pairs first", elem_id="compare-table"
    )
    return _ImageSection(image_id, show, overlay_a, overlay_b, pairs)


def _wire(
    ctx: AppContext,
    comparison: Comparison,
    pair: _PairSection,
    image: _ImageSection,
    first_b: int,
) -> None:
    k_a = comparison.result.shape[0]

    def on_a(a, k):
        b = comparisons.partner(comparison, compare_actions.compare_prototype(a, k_a, "A"))
        b = first_b if b is None else b
        return (b, *compare_actions.show_pair(ctx, comparison, a, b, k))

    def on_pair(a, b, k):
        return compare_actions.show_pair(ctx, comparison, a, b, k)

    def on_click(value, k):
        try:
            a, b = (int(v) for v in str(value).split(":")[0].split(","))
        except ValueError:
            return {}  # not a cell: every output stays as it is
        return (a, b, *compare_actions.show_pair(ctx, comparison, a, b, k))

    def on_image(image_id):
        return compare_actions.compare_image(ctx, comparison, image_id)

    light = {"concurrency_id": "render", "concurrency_limit": ctx.config.search_concurrency}
    hidden = {"api_visibility": "private", **light}
    shown = [pair.pair, pair.gallery_a, pair.gallery_b]
    pair.proto_a.input(on_a, [pair.proto_a, pair.k], [pair.proto_b, *shown], **hidden)
    gr.on(
        [pair.proto_b.input, pair.k.release],
        on_pair,
        [pair.proto_a, pair.proto_b, pair.k],
        shown,
        **hidden,
    )
    pair.click.change(
        on_click, [pair.click, pair.k], [pair.proto_a, pair.proto_b, *shown], **hidden
    )
    gr.on(
        [image.show.click, image.image_id.submit],
        on_image,
        image.image_id,
        [image.overlay_a, image.overlay_b, image.pairs],
        **hidden,
    )


def _endpoints(ctx: AppContext, comparison: Comparison) -> None:
    """/compare_image and /correspondence: API only (no trigger on the page)."""
    with gr.Column(visible=False):
        image_id = gr.Number(precision=0, label="image_id")
        overlay_a = gr.Image(format="png", label="overlay A")
        overlay_b = gr.Image(format="png", label="overlay B")
        pairs = gr.Dataframe(label="matched segments")
        table = gr.Dataframe(label="correspondence")

    def compare_image_endpoint(image_id):
        return compare_actions.compare_image(ctx, comparison, image_id)

    def correspondence_endpoint():
        return comparisons.correspondence_table(comparison)

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
