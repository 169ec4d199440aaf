"""What a click or an API call does beside another model: the --compare index (the Compare tab)
and the --run snapshots (the Timeline tab). The comparison and the timeline are given by the
caller (app.py builds them, explorer.ui hands them to the tabs), never read from the context.
"""

from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import pandas as pd

from explorer import comparison as comparisons
from explorer import thumbnails
from explorer.comparison import Comparison
from explorer.concept_actions import parse_prototype, segment_caption, top_segments
from explorer.context import AppContext
from explorer.image_actions import unknown_image
from explorer.timeline import Stage, Timeline

TIMELINE_MAX_K = 12  # segments per snapshot in the Timeline tab


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


def show_pair(ctx: AppContext, comparison: Comparison, a, b, k) -> PairShown:
    """Prototypes a (model A) and b (model B, the --compare index) side by side."""
    k_a, k_b = comparison.result.shape
    a, b = compare_prototype(a, k_a, "A"), compare_prototype(b, k_b, "B")
    hits_a = top_segments(ctx, a, k)
    hits_b = top_segments(comparison.other, b, k)
    return PairShown(
        comparisons.pair_text(comparison, a, b),
        thumbnails.gallery(ctx, hits_a, segment_caption),
        thumbnails.gallery(comparison.other, hits_b, segment_caption),
    )


def compare_image(ctx: AppContext, comparison: Comparison, image_id):
    """A collection image id (model A's numbering) -> (overlay A path, overlay B path, matched
    segment table)."""
    try:
        return comparisons.overlay_files(ctx, comparison, int(image_id))
    except (TypeError, ValueError, KeyError) as error:
        raise unknown_image(ctx, image_id) from error


class StripShown(NamedTuple):
    status: str  # markdown
    table: pd.DataFrame  # epoch, partner, iou, how, index
    galleries: list[tuple[str, list]]  # (label, items) per snapshot, then the app's model


def timeline_strip(ctx: AppContext, timeline: Timeline, prototype, k, progress=None) -> StripShown:
    """A prototype of the app's model through the run's snapshots. Builds the missing snapshot
    indexes (progress(fraction, what) reports it)."""
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
