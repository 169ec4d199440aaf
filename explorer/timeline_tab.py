"""Timeline tab (app.py --run RUN_DIR): the run's loss curves, and for a prototype of the app's
model its matched prototype in every snapshot, early to late, with their top segments. Opening
the tab (or pressing Show) builds the snapshots' indexes that are missing, with progress shown.
Also the API endpoint /timeline (the strip as a table). Layout and wiring only: what the events
do is in explorer.compare_actions."""

from __future__ import annotations

import gradio as gr

from explorer import compare_actions, concept_actions
from explorer.context import AppContext
from explorer.run_log import loss_figure
from explorer.timeline import Timeline

STRIP_K = 6  # segments shown per snapshot at start


def build(ctx: AppContext, timeline: Timeline, tab: gr.Tab) -> None:
    """Lay out and wire the tab; `tab` is the gr.Tab it sits in (opening it shows the strip)."""
    gr.Markdown(timeline.summary(), elem_id="timeline-summary")
    gr.Plot(
        loss_figure(timeline.log, timeline.snapshots), elem_id="timeline-loss", show_label=False
    )
    with gr.Row(equal_height=False, elem_classes="bottom-aligned"):
        prototype = gr.Dropdown(
            concept_actions.prototype_choices(concept_actions.concept_table(ctx)),
            value=concept_actions.first_prototype(ctx),
            label="Prototype of this index",
            elem_id="timeline-prototype",
        )
        k = gr.Slider(
            1, compare_actions.TIMELINE_MAX_K, value=STRIP_K, step=1, label="segments per snapshot"
        )
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
        shown = compare_actions.timeline_strip(
            ctx, timeline, prototype, k, lambda f, what: progress(f, desc=what)
        )
        galleries = (gr.Gallery(items, label=label) for label, items in shown.galleries)
        return (shown.status, shown.table, *galleries)

    one_at_a_time = {"concurrency_id": "timeline", "concurrency_limit": 1}
    gr.on(
        [tab.select, show.click, prototype.input, k.release],
        on_show,
        [prototype, k],
        [status, table, *galleries],
        api_visibility="private",
        **one_at_a_time,
    )
    _endpoint(ctx, timeline, one_at_a_time)


def _endpoint(ctx: AppContext, timeline: Timeline, concurrency: dict) -> None:
    """/timeline: a prototype of this index -> its partner in every snapshot (API only)."""
    with gr.Column(visible=False):
        prototype = gr.Number(precision=0, label="prototype")
        table = gr.Dataframe(label="partner in each snapshot")

    def timeline_endpoint(prototype):
        return compare_actions.timeline_strip(ctx, timeline, prototype, 1).table

    gr.on([], timeline_endpoint, prototype, table, api_name="timeline", **concurrency)
