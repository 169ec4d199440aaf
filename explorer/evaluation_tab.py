"""Evaluation tab: the unsupervised-segmentation scores the index build stored, if any (layout
only: the tables come from explorer.actions)."""

from __future__ import annotations

import gradio as gr

from explorer.actions import mappings_only, scores_table
from explorer.context import AppContext
from explorer.figures import iou_bars

MAPPINGS = {
    "hungarian": "Hungarian (prototypes clustered into one group per class, matched one-to-one)",
    "majority": "Majority vote (each prototype predicts its dominant class)",
}


def build(ctx: AppContext) -> None:
    evaluation = ctx.index.evaluation()
    if not evaluation or not mappings_only(evaluation):
        gr.Markdown(
            "### No evaluation\nThis index was built without annotations, so there are no "
            "segmentation scores. Build it with `--annotations instances.json` (COCO layout, "
            "or the built-in scenes) to see mIoU, pixel accuracy and per-class IoU here.",
            elem_id="evaluation-none",
        )
        return
    scored = mappings_only(evaluation)
    gr.Markdown(
        "### Unsupervised semantic segmentation\nEvery pixel's prototype is mapped to a class "
        "and compared with the annotations.\n"
        + "\n".join(f"- **{m}**: {MAPPINGS.get(m, m)}" for m in scored),
        elem_id="evaluation-intro",
    )
    gr.Dataframe(scores_table(scored), interactive=False, label="Scores", elem_id="scores")
    gr.Plot(iou_bars(scored), show_label=False, elem_id="iou-bars")
