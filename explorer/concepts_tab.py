"""Concepts tab: the prototype table, the concept map, a prototype's top segments, names, exports.

Layout and wiring only: what the events do is in explorer.concept_actions. Opening a thumbnail's
image in the Image tab is wired by explorer.ui, which knows both tabs.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from explorer import concept_actions
from explorer.context import AppContext


@dataclass
class ConceptsTab:
    sort: gr.Radio
    table: gr.Dataframe
    prototype: gr.Dropdown
    k: gr.Slider
    summary: gr.Markdown
    name: gr.Textbox
    gallery: gr.Gallery
    hits: gr.State  # [{slot_id, image_id, prototype}] of the thumbnails shown
    concept_map: gr.Plot
    map_click: gr.Textbox  # hidden; written by the plotly_click handler in explorer.ui
    save: gr.Button
    csv_button: gr.Button
    coco_button: gr.Button
    download: gr.File

    @property
    def show_outputs(self) -> list:
        return [self.summary, self.gallery, self.hits, self.name, self.concept_map]


def build(ctx: AppContext) -> ConceptsTab:
    """Lay out the tab (the table and map on the left, one prototype on the right) and wire it."""
    table = concept_actions.concept_table(ctx, "frequency")
    start = int(table["prototype"].iloc[0])
    # shown before the page's load event refreshes it: never an empty screen
    shown = concept_actions.show_prototype(ctx, start, ctx.config.default_k)
    with gr.Row(equal_height=False):
        with gr.Column(scale=6, min_width=380):
            sort, table_view, plot, map_click = _table_and_map(ctx, table, shown)
        with gr.Column(scale=6, min_width=420):
            prototype, k, about, gallery, hits = _prototype_section(ctx, table, start, shown)
            name, save, csv_button, coco_button, download = _names_and_exports(shown)
    tab = ConceptsTab(
        sort,
        table_view,
        prototype,
        k,
        about,
        name,
        gallery,
        hits,
        plot,
        map_click,
        save,
        csv_button,
        coco_button,
        download,
    )
    _wire(ctx, tab)
    return tab


def _table_and_map(ctx: AppContext, table, shown: concept_actions.PrototypeShown) -> tuple:
    """The sort choice, the prototype table, the concept map and its hidden click box."""
    sort = gr.Radio(
        concept_actions.sort_choices(ctx), value="frequency", label="Sort prototypes by"
    )
    table_view = gr.Dataframe(
        table,
        interactive=False,
        max_height=330,
        label="Prototypes (click a row)",
        elem_id="concept-table",
    )
    gr.Markdown(
        "**Concept map**: PCA of the prototype vectors; size = images, colour = "
        "dominant class. Click a point to show its segments."
    )
    plot = gr.Plot(
        shown.concept_map,
        show_label=False,
        elem_id="concept-map",
    )
    map_click = gr.Textbox(visible="hidden", elem_id="map-click")
    return sort, table_view, plot, map_click


def _prototype_section(
    ctx: AppContext, table, start: int, shown: concept_actions.PrototypeShown
) -> tuple:
    """The prototype picker, how many segments, its summary and its top segments."""
    cfg = ctx.config
    with gr.Row():
        prototype = gr.Dropdown(
            concept_actions.prototype_choices(table),
            value=start,
            label="Prototype",
            scale=3,
            elem_id="prototype-pick",
        )
        k = gr.Slider(1, cfg.max_k, value=cfg.default_k, step=1, label="Top segments", scale=2)
    about = gr.Markdown(shown.summary, latex_delimiters=[], elem_id="prototype-summary")
    gallery = gr.Gallery(
        shown.gallery,
        label="Top segments",
        show_label=False,
        columns=4,
        height="auto",
        object_fit="contain",
        allow_preview=False,
        elem_id="concept-gallery",
    )
    hits = gr.State(shown.hits)
    return prototype, k, about, gallery, hits


def _names_and_exports(shown: concept_actions.PrototypeShown) -> tuple:
    """The name box and its button, the two export buttons and the download they fill."""
    with gr.Row(equal_height=False, elem_classes="bottom-aligned"):
        name = gr.Textbox(
            shown.name,
            label="Name this prototype",
            placeholder="e.g. sky, dog faces, striped texture",
            scale=4,
            elem_id="prototype-name",
        )
        save = gr.Button("Save name", scale=1, min_width=110, elem_id="save-name")
    with gr.Row():
        csv_button = gr.Button("Export concept table (CSV)", size="sm")
        coco_button = gr.Button("Export top segments (COCO JSON)", size="sm")
    download = gr.File(label="Download", visible=False, elem_id="download")
    return name, save, csv_button, coco_button, download


def _wire(ctx: AppContext, tab: ConceptsTab) -> None:
    render = {"concurrency_id": "render", "concurrency_limit": ctx.config.search_concurrency}
    quiet = {"api_visibility": "undocumented"}

    def on_sort(sort, prototype):
        return concept_actions.refresh(ctx, sort, prototype)

    # a row or map click sets the dropdown and shows the prototype in one answer (the
    # dropdown's own event is .input, a user's pick: not a second round trip after a click)
    def on_row(k, evt: gr.SelectData):
        prototype = concept_actions.parse_prototype(ctx, evt.row_value[0])
        return prototype, *concept_actions.show_prototype(ctx, prototype, k)

    def on_map_click(value, k):
        if not value:
            return {}  # every output stays as it is
        prototype = concept_actions.parse_prototype(ctx, value)
        return prototype, *concept_actions.show_prototype(ctx, prototype, k)

    def on_show(prototype, k):
        return concept_actions.show_prototype(ctx, prototype, k)

    def on_save(prototype, name, sort, k):
        concept_actions.save_name(ctx, prototype, name)
        return (
            *concept_actions.refresh(ctx, sort, prototype),
            *concept_actions.show_prototype(ctx, prototype, k),
        )

    def on_export_csv():
        return gr.File(value=concept_actions.export_table(ctx), visible=True)

    def on_export_coco(prototype, k):
        return gr.File(value=concept_actions.export_segments(ctx, prototype, k), visible=True)

    tab.sort.change(on_sort, [tab.sort, tab.prototype], [tab.table, tab.prototype], **quiet)
    picked = [tab.prototype, *tab.show_outputs]
    tab.table.select(on_row, tab.k, picked, **render, **quiet)
    tab.map_click.change(on_map_click, [tab.map_click, tab.k], picked, **render, **quiet)
    tab.prototype.input(on_show, [tab.prototype, tab.k], tab.show_outputs, **render, **quiet)
    tab.k.release(on_show, [tab.prototype, tab.k], tab.show_outputs, **render, **quiet)
    save_outputs = [tab.table, tab.prototype, *tab.show_outputs]
    gr.on(
        [tab.save.click, tab.name.submit],
        on_save,
        [tab.prototype, tab.name, tab.sort, tab.k],
        save_outputs,
        **render,
        **quiet,
    )
    tab.csv_button.click(on_export_csv, None, tab.download, **render, **quiet)
    tab.coco_button.click(on_export_coco, [tab.prototype, tab.k], tab.download, **render, **quiet)
