"""Concepts tab: the prototype table, the concept map, a prototype's top segments, names, exports.

Callbacks are plain functions of the AppContext and the user's inputs (tested without a
browser); `build` lays the tab out and wires its own events. Opening a thumbnail's image in the
Image tab is wired by explorer.ui, which knows both tabs.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import numpy as np
import pandas as pd

from explorer import segments
from explorer.context import AppContext
from explorer.export import ExportSegment, coco_document, concept_table_csv, write_coco_json
from explorer.figures import concept_map
from explorer.render import markdown_text, prototype_title
from indexing.labels import MAX_LENGTH as MAX_NAME_LENGTH

SORTS = {
    "frequency": (["images", "slots", "prototype"], [False, False, True]),
    "area": (["mean_area", "prototype"], [False, True]),
    "purity": (["purity", "images", "prototype"], [False, False, True]),
    "id": (["prototype"], [True]),
}


def has_classes(ctx: AppContext) -> bool:
    return bool(ctx.index.class_names)


def sort_choices(ctx: AppContext) -> list[str]:
    return [s for s in SORTS if s != "purity" or has_classes(ctx)]


def concept_table(ctx: AppContext, sort: str = "frequency") -> pd.DataFrame:
    """One display row per prototype (prototype, name, images, slots, area % (mean over its
    slots), and dominant class + purity when the index has annotations), in `sort` order."""
    table = ctx.index.prototypes()
    by, ascending = SORTS.get(sort, SORTS["frequency"])
    table = table.sort_values(by, ascending=ascending, na_position="last", kind="stable")
    out = pd.DataFrame(
        {
            "prototype": table["prototype"].astype(int),
            "name": table["label"].fillna("").astype(str),
            "images": table["images"].astype(int),
            "slots": table["slots"].astype(int),
            "area %": (100 * table["mean_area"].astype(float)).round(1),
        }
    )
    if has_classes(ctx):
        out["class"] = table["dominant_class"].fillna("").astype(str)
        out["purity"] = table["purity"].astype(float).round(3)
    return out.reset_index(drop=True)


def prototype_choices(table: pd.DataFrame) -> list[tuple[str, int]]:
    """Dropdown entries in the table's order: ('p3 · sky (45 images)', 3)."""
    return [
        (f"{prototype_title(int(r.prototype), r.name)} ({int(r.images)} images)", int(r.prototype))
        for r in table[["prototype", "name", "images"]].itertuples()
    ]


def first_prototype(ctx: AppContext) -> int:
    """The most frequent prototype: what the app shows at start."""
    return int(concept_table(ctx, "frequency")["prototype"].iloc[0])


def parse_prototype(ctx: AppContext, value) -> int:
    """A prototype id from a dropdown / number / map click ('3' or '3:<timestamp>')."""
    try:
        prototype = int(float(str(value).split(":")[0]))
    except (TypeError, ValueError, OverflowError) as error:  # text, NaN, infinity
        raise gr.Error(f"Not a prototype: {value!r}") from error
    if not 0 <= prototype < ctx.num_prototypes:
        raise gr.Error(f"Prototype {prototype} does not exist (0 to {ctx.num_prototypes - 1}).")
    return prototype


def summary(ctx: AppContext, prototype: int) -> str:
    """Markdown describing one prototype (its name and class shown as text)."""
    row = ctx.index.prototypes().set_index("prototype").loc[prototype]
    name = str(row["label"] or "")
    head = f"### {markdown_text(prototype_title(prototype, name))}"
    if int(row["images"]) == 0:
        return head + "\nNever the strongest prototype anywhere in the collection: no segments."
    facts = [
        f"**{int(row['images'])}** images",
        f"**{int(row['slots'])}** slots",
        f"mean area {100 * float(row['mean_area']):.1f}%",
        f"mean score {float(row['mean_score']):.3f}",
    ]
    if str(row.get("dominant_class") or ""):
        purity = row.get("purity")
        purity_text = f" (purity {float(purity):.2f})" if pd.notna(purity) else ""
        facts.append(f"mostly **{markdown_text(row['dominant_class'])}**{purity_text}")
    return (
        head
        + "\n"
        + " · ".join(facts)
        + "  \nIts best segments by score, the prototype's mask in red; click one to open it."
    )


def top_segments(ctx: AppContext, prototype: int, k: int) -> pd.DataFrame:
    k = int(np.clip(int(k), 1, ctx.config.max_k))
    return ctx.index.top_segments(int(prototype), k)


def caption(row) -> str:
    """Caption of a top-segment thumbnail: image id and the slot's score."""
    return f"img {int(row.image_id)} · {float(row.score):.2f}"


def show_prototype(ctx: AppContext, prototype, k):
    """-> (summary markdown, gallery items, gallery hit records, name for the textbox, map)."""
    prototype = parse_prototype(ctx, prototype)
    hits = top_segments(ctx, prototype, k)
    items = segments.gallery(ctx, hits, caption)
    name = segments.names(ctx).get(prototype, "")
    return (
        summary(ctx, prototype),
        items,
        segments.hit_records(hits),
        name,
        concept_map(ctx.index.prototype_vectors(), ctx.index.prototypes(), selected=prototype),
    )


def save_name(ctx: AppContext, prototype, name: str) -> str:
    """Name (or, with an empty name, un-name) a prototype; persisted by the index. A name is
    never cut (a cut can split a character sequence such as an emoji): too long is an error."""
    prototype = parse_prototype(ctx, prototype)
    name = " ".join(str(name or "").split())
    if len(name) > MAX_NAME_LENGTH:
        raise gr.Error(
            f"A name has at most {MAX_NAME_LENGTH} characters; this one has {len(name)}."
        )
    ctx.index.set_label(prototype, name)
    shown = html.escape(name)  # toasts render HTML
    gr.Info(f"p{prototype} is now named “{shown}”." if name else f"p{prototype} has no name now.")
    return name


def export_table(ctx: AppContext) -> str:
    path = ctx.exports_dir / f"concepts-{ctx.index_key}.csv"
    return str(concept_table_csv(concept_table(ctx, "id"), path))


def export_segments(ctx: AppContext, prototype, k) -> str:
    """COCO JSON of the prototype's top-k segments (RLE masks of the prototype in each image)."""
    prototype = parse_prototype(ctx, prototype)
    hits = top_segments(ctx, prototype, k)
    items = []
    for hit in hits.itertuples():
        record = ctx.index.image(int(hit.image_id))
        try:
            file_name = str(record.path.relative_to(ctx.index.image_root))
        except ValueError:
            file_name = record.path.name
        items.append(
            ExportSegment(
                slot_id=int(hit.slot_id),
                image_id=int(hit.image_id),
                file_name=file_name,
                width=int(record.width),
                height=int(record.height),
                mask=record.assignment == prototype,
                score=float(hit.score),
                bbox=list(hit.bbox),
            )
        )
    name = segments.names(ctx).get(prototype, "")
    document = coco_document(prototype, name, items)
    path = ctx.exports_dir / f"prototype-{prototype}-top{len(items)}-{ctx.index_key}.json"
    return str(write_coco_json(document, path))


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


def refresh(ctx: AppContext, sort: str, prototype):
    """After a sort, a name change or a page load: (table, dropdown whose choices show the
    names and keep the selection)."""
    table = concept_table(ctx, sort)
    prototype = parse_prototype(ctx, prototype)
    return (table, gr.Dropdown(choices=prototype_choices(table), value=prototype))


def build(ctx: AppContext) -> ConceptsTab:
    cfg = ctx.config
    table = concept_table(ctx, "frequency")
    start = int(table["prototype"].iloc[0])
    about_start, items_start, hits_start, name_start, map_start = show_prototype(
        ctx, start, cfg.default_k
    )  # shown before the page's load event refreshes it: never an empty screen
    with gr.Row(equal_height=False):
        with gr.Column(scale=6, min_width=380):
            sort = gr.Radio(sort_choices(ctx), value="frequency", label="Sort prototypes by")
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
                map_start,
                show_label=False,
                elem_id="concept-map",
            )
            map_click = gr.Textbox(visible="hidden", elem_id="map-click")
        with gr.Column(scale=6, min_width=420):
            with gr.Row():
                prototype = gr.Dropdown(
                    prototype_choices(table),
                    value=start,
                    label="Prototype",
                    scale=3,
                    elem_id="prototype-pick",
                )
                k = gr.Slider(
                    1, cfg.max_k, value=cfg.default_k, step=1, label="Top segments", scale=2
                )
            about = gr.Markdown(about_start, latex_delimiters=[], elem_id="prototype-summary")
            gallery = gr.Gallery(
                items_start,
                label="Top segments",
                show_label=False,
                columns=4,
                height="auto",
                object_fit="contain",
                allow_preview=False,
                elem_id="concept-gallery",
            )
            hits = gr.State(hits_start)
            with gr.Row(equal_height=False, elem_classes="bottom-aligned"):
                name = gr.Textbox(
                    name_start,
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


def _wire(ctx: AppContext, tab: ConceptsTab) -> None:
    render = {"concurrency_id": "render", "concurrency_limit": ctx.config.search_concurrency}
    quiet = {"api_visibility": "undocumented"}

    def on_sort(sort, prototype):
        return refresh(ctx, sort, prototype)

    def on_row(evt: gr.SelectData):
        return parse_prototype(ctx, evt.row_value[0])

    def on_map_click(value):
        if not value:
            return gr.skip()
        return parse_prototype(ctx, value)

    def on_show(prototype, k):
        return show_prototype(ctx, prototype, k)

    def on_save(prototype, name, sort, k):
        save_name(ctx, prototype, name)
        return refresh(ctx, sort, prototype) + show_prototype(ctx, prototype, k)

    def on_export_csv():
        return gr.File(value=export_table(ctx), visible=True)

    def on_export_coco(prototype, k):
        return gr.File(value=export_segments(ctx, prototype, k), visible=True)

    tab.sort.change(on_sort, [tab.sort, tab.prototype], [tab.table, tab.prototype], **quiet)
    tab.table.select(on_row, None, tab.prototype, **quiet)
    tab.map_click.change(on_map_click, tab.map_click, tab.prototype, **quiet)
    tab.prototype.change(on_show, [tab.prototype, tab.k], tab.show_outputs, **render, **quiet)
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
