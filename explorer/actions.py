"""The app's actions: what a click or an API call does, as plain functions of the AppContext and
the user's inputs (tested without a browser). The tabs (explorer/*_tab.py) only lay out and wire
them; several tabs and the API share them (parse a prototype, top segments, upload, ...).

Each action that fills several components returns a NamedTuple whose fields are in the order of
the components it fills. Errors for the user are gr.Error (shown as a toast, never a traceback).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import NamedTuple

import gradio as gr
import numpy as np
import pandas as pd

from explorer import comparison as comparisons
from explorer import thumbnails
from explorer import view as views
from explorer.context import AppContext
from explorer.export import ExportSegment, coco_document, concept_table_csv, write_coco_json
from explorer.figures import concept_map
from explorer.render import markdown_text, prototype_title
from explorer.timeline import Stage
from explorer.uploads import UploadRejected, read_upload
from explorer.view import ImageView
from indexing.labels import MAX_LENGTH as MAX_NAME_LENGTH
from indexing.schema import SIMILAR_COLUMNS

TIMELINE_MAX_K = 12  # segments per snapshot in the Timeline tab


# ---- prototypes: the Concepts tab, the API ---------------------------------------------------


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
    concept_map: object  # plotly figure, the prototype highlighted


def show_prototype(ctx: AppContext, prototype, k) -> PrototypeShown:
    prototype = parse_prototype(ctx, prototype)
    hits = top_segments(ctx, prototype, k)
    vectors, table = ctx.index.prototype_vectors(), ctx.index.prototypes()
    return PrototypeShown(
        summary=prototype_summary(ctx, prototype),
        gallery=thumbnails.gallery(ctx, hits, segment_caption),
        hits=thumbnails.hit_records(hits),
        name=thumbnails.names(ctx).get(prototype, ""),
        concept_map=concept_map(vectors, table, selected=prototype),
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


# ---- images and uploads: the Image tab, the API -------------------------------------------


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


# ---- two models: the Compare tab (app.py --compare) --------------------------------------------


def compare_prototype(value, k: int, side: str) -> int:
    try:
        prototype = int(value)
    except (TypeError, ValueError) as error:
        raise gr.Error(f"Pick a prototype of model {side}, not {value!r}.") from error
    if not 0 <= prototype < k:
        raise gr.Error(f"Model {side} has prototypes 0 to {k - 1}, not {prototype}.")
    return prototype


class PairShown(NamedTuple):
    text: str  # markdown: both prototypes' pixels, shared pixels, IoU
    gallery_a: list
    gallery_b: list


def show_pair(ctx: AppContext, a, b, k) -> PairShown:
    """Prototypes a (model A) and b (model B, the --compare index) side by side."""
    comparison = ctx.comparison
    k_a, k_b = comparison.result.shape
    a, b = compare_prototype(a, k_a, "A"), compare_prototype(b, k_b, "B")
    hits_a = top_segments(ctx, a, k)
    hits_b = top_segments(comparison.other, b, k)
    return PairShown(
        comparisons.pair_text(comparison, a, b),
        thumbnails.gallery(ctx, hits_a, segment_caption),
        thumbnails.gallery(comparison.other, hits_b, segment_caption),
    )


def compare_image(ctx: AppContext, image_id):
    """A collection image id (model A's numbering) -> (overlay A path, overlay B path, matched
    segment table)."""
    try:
        return comparisons.overlay_files(ctx, ctx.comparison, int(image_id))
    except (TypeError, ValueError, KeyError) as error:
        raise unknown_image(ctx, image_id) from error


# ---- a training run: the Timeline tab (app.py --run) ------------------------------------------


class StripShown(NamedTuple):
    status: str  # markdown
    table: pd.DataFrame  # epoch, partner, iou, how, index
    galleries: list[tuple[str, list]]  # (label, items) per snapshot, then the app's model


def timeline_strip(ctx: AppContext, prototype, k, progress=None) -> StripShown:
    """A prototype of the app's model through the run's snapshots. Builds the missing snapshot
    indexes (progress(fraction, what) reports it)."""
    timeline = ctx.timeline
    prototype = parse_prototype(ctx, prototype)
    k = int(min(max(int(k), 1), TIMELINE_MAX_K))
    stages = timeline.stages(progress)
    table = timeline.strip(prototype, stages)
    shown = [_stage_gallery(stage, row, k) for stage, row in zip(stages, table.itertuples())]
    own = top_segments(ctx, prototype, k)
    shown.append((f"this index · {thumbnails.title(ctx, prototype)}", _gallery(ctx, own)))
    status = (
        f"**{thumbnails.title(ctx, prototype)}** of this index in each snapshot of the run, early "
        "to late: its Hungarian partner over the collection's pixels (its best partner by IoU "
        "where the matching left it out), then its own top segments."
    )
    return StripShown(status, table, shown)


def _stage_gallery(stage: Stage, row, k: int) -> tuple[str, list]:
    label = f"epoch {stage.snapshot.epoch}"
    if row.partner < 0:
        return f"{label}: no partner (the prototype has no pixels)", []
    iou = "n/a" if row.iou is None or pd.isna(row.iou) else f"{row.iou:.2f}"
    hits = top_segments(stage.ctx, int(row.partner), k)
    return f"{label} · prototype {row.partner} · IoU {iou}", _gallery(stage.ctx, hits)


def _gallery(ctx: AppContext, hits: pd.DataFrame) -> list:
    return thumbnails.gallery(ctx, hits, segment_caption)


# ---- scores: the Evaluation tab --------------------------------------------------------------


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def scores_table(evaluation: dict) -> pd.DataFrame:
    """One row per mapping: mIoU, pixel accuracy (and things / stuff mIoU when stored)."""
    rows = []
    for mapping, scores in evaluation.items():
        if not isinstance(scores, dict) or "miou" not in scores:
            continue
        row = {
            "mapping": mapping,
            "mIoU": _percent(scores.get("miou")),
            "pixel accuracy": _percent(scores.get("pixel_accuracy")),
        }
        if "things_miou" in scores:
            row["things mIoU"] = _percent(scores.get("things_miou"))
            row["stuff mIoU"] = _percent(scores.get("stuff_miou"))
        rows.append(row)
    return pd.DataFrame(rows)


def mappings_only(evaluation: dict) -> dict:
    return {k: v for k, v in evaluation.items() if isinstance(v, dict) and "per_class_iou" in v}
