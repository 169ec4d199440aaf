"""The whole app over a real small index, without a browser: the header, the launch options,
the Blocks built without launching, the Evaluation tab's tables, the API functions."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from explorer import api, concept_actions, evaluation_tab, ui

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]


def test_api_functions(explorer_ctx, upload_samples):
    ctx = explorer_ctx
    overlay, table = api.group_image(ctx, str(upload_samples["good"]))
    with Image.open(overlay) as image:
        assert image.size == (128, 96)
    assert list(table.columns)[:2] == ["prototype", "name"]
    items, hits = api.top_segments_api(ctx, 2, 3)
    assert len(items) == 3 and list(hits["prototype"]) == [2, 2, 2]
    items, hits = api.similar_api(ctx, int(hits["slot_id"].iloc[0]), 4)
    assert len(items) == 4 and "similarity" in hits
    with pytest.raises(gr.Error, match="not an image"):
        api.group_image(ctx, str(upload_samples["not_image"]))
    with pytest.raises(gr.Error, match="No slot"):
        api.similar_api(ctx, 10**9, 3)
    with pytest.raises(gr.Error, match="does not exist"):
        api.top_segments_api(ctx, 99, 3)
    for bad in (float("nan"), float("inf"), "many", None):
        with pytest.raises(gr.Error, match="k must be a whole number"):
            api.top_segments_api(ctx, 2, bad)
        with pytest.raises(gr.Error, match="No slot"):
            api.similar_api(ctx, bad, 3)


def test_evaluation_tables(explorer_ctx):
    evaluation = explorer_ctx.index.evaluation()
    table = evaluation_tab.scores_table(evaluation_tab.mappings_only(evaluation))
    assert set(table["mapping"]) == {"majority", "hungarian"}
    assert all(v.endswith("%") for v in table["mIoU"])


def test_header_and_launch_options(explorer_ctx, explorer_data):
    ctx = explorer_ctx
    header = ui.describe(ctx)
    assert "60 images" in header and "K = 8" in header and "resnet18" in header
    options = ui.launch_options(ctx, explorer_data["index"], explorer_data["checkpoint"])
    assert options["server_name"] == "127.0.0.1" and options["share"] is False
    assert str(explorer_data["index"].resolve()) in options["blocked_paths"]
    assert str(explorer_data["checkpoint"].resolve()) in options["blocked_paths"]
    assert options["allowed_paths"] == [str(ctx.exports_dir)]  # thumbnails: static paths
    assert options["max_file_size"] == ctx.config.limits.max_bytes


def test_build_does_not_launch(explorer_ctx):
    demo = ui.build_app(explorer_ctx)
    assert isinstance(demo, gr.Blocks) and not demo.is_running
    frequency, age = demo.delete_cache  # Gradio's copies of uploads: gone within the hour
    assert age <= 3600 and frequency <= age / 4
    names = {d.api_name for d in demo.fns.values()}
    assert {"group_image", "top_segments", "similar"} <= names


class NoAnnotations:
    """The session's real index, seen as if it had been built without annotations."""

    class_names: list[str] = []

    def __init__(self, index):
        self._index = index

    def evaluation(self):
        return None

    def prototypes(self):
        table = self._index.prototypes()
        table["dominant_class"], table["purity"] = "", np.nan
        return table

    def __getattr__(self, name):
        return getattr(self._index, name)


def test_an_index_without_annotations(explorer_ctx):
    ctx = replace(explorer_ctx, index=NoAnnotations(explorer_ctx.index))
    assert concept_actions.sort_choices(ctx) == ["frequency", "area", "id"]
    table = concept_actions.concept_table(ctx, "purity")  # falls back to frequency
    assert "class" not in table and "purity" not in table
    assert "mostly" not in concept_actions.prototype_summary(
        ctx, concept_actions.first_prototype(ctx)
    )
    demo = ui.build_app(ctx)
    notes = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "evaluation-none"]
    assert len(notes) == 1 and "without annotations" in notes[0].value
