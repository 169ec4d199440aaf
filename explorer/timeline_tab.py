"""Timeline tab (app.py --run RUN_DIR): the run's loss curves, and for a prototype of the app's
model its matched prototype in every snapshot, early to late, with their top segments. Opening
the tab (or pressing Show) builds the snapshots' indexes that are missing, with progress shown.
Also the API endpoint /timeline (the strip as a table)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from explorer import segments
from explorer.concepts_tab import (
    caption,
    concept_table,
    first_prototype,
    parse_prototype,
    prototype_choices,
    top_segments,
)
from explorer.context import AppContext
from explorer.timeline import Stage, loss_figure

STRIP_K = 6  # segments shown per snapshot at start
STRIP_MAX_K = 12


def strip(ctx: AppContext, prototype, k, progress=None):
    """-> (status markdown, strip table, [(label, gallery items)] per snapshot + the app's
    model last). Builds missing snapshot indexes (progress(fraction, what) reports it)."""
    timeline = ctx.timeline
    prototype = parse_prototype(ctx, prototype)
    k = int(min(max(int(k), 1), STRIP_MAX_K))
    stages = timeline.stages(progress)
    table = timeline.strip(prototype, stages)
    shown = [_stage_gallery(stage, row, k) for stage, row in zip(stages, table.itertuples())]
    own = top_segments(ctx, prototype, k)
    shown.append((f"this index · {segments.title(ctx, prototype)}", _items(ctx, own)))
    status = (
        f"**{segments.title(ctx, prototype)}** of this index in each snapshot of the run, early "
        "to late: its Hungarian partner over the collection's pixels (its best partner by IoU "
        "where the matching left it out), then its own top segments."
    )
    return status, table, shown


def _stage_gallery(stage: Stage, row, k: int) -> tuple[str, list]:
    label = f"epoch {stage.snapshot.epoch}"
    if row.partner < 0:
        return f"{label}: no partner (the prototype has no pixels)", []
    iou = "n/a" if row.iou is None or pd.isna(row.iou) else f"{row.iou:.2f}"
    hits = top_segments(stage.ctx, int(row.partner), k)
    return f"{label} · prototype {row.partner} · IoU {iou}", _items(stage.ctx, hits)


def _items(ctx: AppContext, hits: pd.DataFrame) -> list:
    return segments.gallery(ctx, hits, caption)


def build(ctx: AppContext, tab: gr.Tab) -> None:
    """Lay out and wire the tab; `tab` is the gr.Tab it sits in (opening it shows the strip)."""
    timeline = ctx.timeline
    gr.Markdown(timeline.summary(), elem_id="timeline-summary")
    gr.Plot(
        loss_figure(timeline.log, timeline.snapshots), elem_id="timeline-loss", show_label=False
    )
    with gr.Row(equal_height=False, elem_classes="bottom-aligned"):
        prototype = gr.Dropdown(
            prototype_choices(concept_table(ctx)),
            value=first_prototype(ctx),
            label="Prototype of this index",
            elem_id="timeline-prototype",
        )
        k = gr.Slider(1, STRIP_MAX_K, value=STRIP_K, step=1, label="segments per snapshot")
        show = gr.Button("Show timeline", variant="primary", elem_id="timeline-show")
    status = gr.Markdown(
        "Open this tab or press **Show timeline**: the snapshots' indexes are built on first "
        "use (a progress bar shows it) and cached.",
        elem_id="timeline-status",
    )
    table = gr.Dataframe(label="partner in each snapshot", elem_id="timeline-table")
    labels = [f"epoch {s.epoch}" for s in timeline.snapshots] + ["this index"]
    ids = [f"timeline-epoch-{s.epoch}" for s in timeline.snapshots] + ["timeline-final"]
    galleries = [
        gr.Gallery(label=label, columns=STRIP_K, rows=1, height=260, elem_id=elem_id)
        for label, elem_id in zip(labels, ids)
    ]

    def on_show(prototype, k, progress=gr.Progress()):  # noqa: B008 (gradio idiom)
        text, rows, shown = strip(ctx, prototype, k, lambda f, what: progress(f, desc=what))
        return (text, rows, *(gr.Gallery(items, label=label) for label, items in shown))

    one_at_a_time = {"concurrency_id": "timeline", "concurrency_limit": 1}
    gr.on(
        [tab.select, show.click, prototype.input, k.release],
        on_show,
        [prototype, k],
        [status, table, *galleries],
        api_visibility="private",
        **one_at_a_time,
    )
    _endpoint(ctx, one_at_a_time)


def _endpoint(ctx: AppContext, concurrency: dict) -> None:
    """/timeline: a prototype of this index -> its partner in every snapshot (API only)."""
    with gr.Column(visible=False):
        prototype = gr.Number(precision=0, label="prototype")
        table = gr.Dataframe(label="partner in each snapshot")

    def timeline_endpoint(prototype):
        return strip(ctx, prototype, 1)[1]

    gr.on([], timeline_endpoint, prototype, table, api_name="timeline", **concurrency)
