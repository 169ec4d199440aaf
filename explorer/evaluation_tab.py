"""Evaluation tab: the unsupervised-segmentation scores the index build stored, if any, as a
table (scores_table) and per-class IoU bars."""

from __future__ import annotations

import gradio as gr
import pandas as pd

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
