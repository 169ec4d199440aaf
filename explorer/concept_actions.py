"""What a click or an API call does to the prototypes (the Concepts tab, the Timeline tab's
prototype picker, the API): plain functions of the AppContext and the user's inputs, tested
without a browser. explorer.image_actions does the same for images, uploads and similar
segments, explorer.compare_actions for the --compare model and the --run snapshots.

Each action that fills several components returns a NamedTuple whose fields are in the order of
the components it fills. Errors for the user are gr.Error (shown as a toast, never a traceback).
"""

from __future__ import annotations

import html
from typing import NamedTuple

import gradio as gr
import numpy as np
import pandas as pd
from gradio.components.plot import PlotData

from explorer import thumbnails
from explorer.context import AppContext
from explorer.export import ExportSegment, coco_document, concept_table_csv, write_coco_json
from explorer.render import markdown_text, prototype_title
from indexing.store.labels import MAX_LENGTH as MAX_NAME_LENGTH

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


def prototype_summary(ctx: AppContext, prototype: int) -> str:
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


def segment_caption(row) -> str:
    """Caption of a top-segment thumbnail: image id and the slot's score."""
    return f"img {int(row.image_id)} · {float(row.score):.2f}"


class PrototypeShown(NamedTuple):
    """What the Concepts tab shows for one prototype (ConceptsTab.show_outputs' order)."""

    summary: str  # markdown
    gallery: list  # [(thumbnail path, caption)]
    hits: list[dict]  # the thumbnails' slots, for clicks
    name: str  # for the name textbox
    concept_map: PlotData  # plotly JSON, the prototype highlighted (explorer.concept_maps)


def show_prototype(ctx: AppContext, prototype, k) -> PrototypeShown:
    prototype = parse_prototype(ctx, prototype)
    hits = top_segments(ctx, prototype, k)
    vectors, table = ctx.index.prototype_vectors(), ctx.index.prototypes()
    return PrototypeShown(
        summary=prototype_summary(ctx, prototype),
        gallery=thumbnails.gallery(ctx, hits, segment_caption),
        hits=thumbnails.hit_records(hits),
        name=thumbnails.names(ctx).get(prototype, ""),
        concept_map=PlotData(type="plotly", plot=ctx.maps.json(vectors, table, prototype)),
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
    name = thumbnails.names(ctx).get(prototype, "")
    document = coco_document(prototype, name, items)
    path = ctx.exports_dir / f"prototype-{prototype}-top{len(items)}-{ctx.index_key}.json"
    return str(write_coco_json(document, path))


class TableShown(NamedTuple):
    table: pd.DataFrame
    prototype: gr.Dropdown  # choices show the names, the selection kept


def refresh(ctx: AppContext, sort: str, prototype) -> TableShown:
    """After a sort, a name change or a page load: the table and the dropdown."""
    table = concept_table(ctx, sort)
    prototype = parse_prototype(ctx, prototype)
    return TableShown(table, gr.Dropdown(choices=prototype_choices(table), value=prototype))
