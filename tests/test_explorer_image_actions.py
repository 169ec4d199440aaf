"""What the Image tab and the API do to images, uploads and similar segments
(explorer.image_actions), over a real small index, without a browser."""

from __future__ import annotations

import html
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from explorer import concept_actions, image_actions, ui
from explorer import view as views
from explorer.render import display_scale
from explorer.uploads import UploadRejected

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]


def test_initial_view_selects_the_first_prototypes_best_segment(explorer_ctx):
    ctx = explorer_ctx
    view = image_actions.initial_view(ctx)
    prototype = concept_actions.first_prototype(ctx)
    assert view.source == "collection" and view.selected == prototype
    assert view.image_id == int(ctx.index.top_segments(prototype, 1)["image_id"].iloc[0])
    shown = image_actions.present(ctx, view, 0.5, 4, False)
    state, overlay, legend, table, status, heading, gallery, hits = shown
    record = ctx.index.image(view.image_id)
    factor = display_scale(record.height, record.width)
    with Image.open(overlay) as image:
        assert image.size == (record.width * factor, record.height * factor)
        drawn = np.asarray(image.convert("RGB"))
    assert np.array_equal(drawn, views.draw(ctx, view, 0.5))  # lossless, the view's overlay
    assert Path(overlay).parent == ctx.overlays_dir
    assert f"p{prototype}" in legend and len(table) == len(record.slots)
    assert f"image {view.image_id}" in status and len(gallery) == len(hits) == 4
    assert all(h["image_id"] != view.image_id for h in hits)


def test_clicking_the_overlay_selects_the_segment_under_the_pointer(explorer_ctx):
    ctx = explorer_ctx
    view = views.open_collection(ctx, ctx.index.image_ids()[1])
    record = ctx.index.image(view.image_id)
    factor = display_scale(record.height, record.width)
    for y, x in [(0, 0), (record.height - 1, record.width - 1), (50, 120)]:
        expected = int(record.assignment[y, x])
        picked = views.prototype_at(ctx, view, x * factor + factor // 2, y * factor)
        assert picked == expected
        assert view.with_selection(picked).slot_id(picked) in set(record.slots["slot_id"])
    assert views.prototype_at(ctx, view, -5, 10**6) == int(record.assignment[-1, 0])


def test_opening_an_unknown_image_is_a_clear_error(explorer_ctx):
    with pytest.raises(gr.Error, match="No image 99999"):
        image_actions.open_image(explorer_ctx, 99999)
    with pytest.raises(gr.Error, match="No image"):
        image_actions.open_image(explorer_ctx, "abc")


def test_similar_for_a_collection_segment_and_same_prototype_filter(explorer_ctx):
    ctx = explorer_ctx
    view = image_actions.initial_view(ctx)
    hits = image_actions.similar_segments(ctx, view, 6, False)
    assert len(hits) == 6 and list(hits["similarity"]) == sorted(hits["similarity"], reverse=True)
    same = image_actions.similar_segments(ctx, view, 6, True)
    assert set(same["prototype"]) == {view.selected}
    assert image_actions.similar_segments(ctx, view.with_selection(None), 6, False).empty
    assert "Click a segment" in image_actions.show_similar(ctx, None, 3, False)[0]


def test_upload_groups_the_image_and_finds_similar_segments(explorer_ctx, upload_samples):
    ctx = explorer_ctx
    view = image_actions.upload(ctx, str(upload_samples["exif"]))
    assert view.source == "upload" and view.rgb.shape == (80, 40, 3)
    assert view.assignment.shape == (80, 40) and view.selected is not None
    assert abs(view.segments["area"].sum() - 1) < 1e-5
    overlay = views.draw(ctx, view, 0.5)
    factor = display_scale(80, 40)
    assert overlay.shape == (80 * factor, 40 * factor, 3)
    hits = image_actions.similar_segments(ctx, view, 5, True)
    assert len(hits) == 5 and set(hits["prototype"]) == {view.selected}
    shown = image_actions.present(ctx, view, 0.3, 5, False)
    assert "upload exif.jpg" in html.unescape(shown.status) and len(shown.similar_gallery) == 5


def test_overlay_files_are_content_named_written_once_and_bounded(explorer_ctx, tmp_path):
    ctx = replace(
        explorer_ctx, cache_dir=tmp_path, config=replace(explorer_ctx.config, max_overlay_files=3)
    )
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (20, 30, 3), dtype=np.uint8) for _ in range(5)]
    first = views.overlay_file(ctx, arrays[0])
    inode = Path(first).stat().st_ino
    assert views.overlay_file(ctx, arrays[0].copy()) == first  # same pixels, same file ...
    assert Path(first).stat().st_ino == inode  # ... not rewritten
    assert views.overlay_file(ctx, arrays[0][:, :20].copy()) != first  # shape is part of the name
    for array in arrays[1:]:
        views.overlay_file(ctx, array)
    kept = sorted(p.name for p in ctx.overlays_dir.iterdir())
    assert len(kept) == 3 and not any(name.endswith(".tmp") for name in kept)
    assert Path(views.overlay_file(ctx, arrays[4])).is_file()
    # an overlay handed out again counts as new: the next ones prune the others first
    time.sleep(0.05)  # file times tick in jiffies: keep the steps apart
    again = views.overlay_file(ctx, arrays[2])
    for array in arrays[:2]:
        time.sleep(0.05)
        views.overlay_file(ctx, array)
    assert Path(again).is_file()


@pytest.mark.parametrize(
    "kind", ["not_image", "truncated", "one_pixel", "huge_header", "empty", "thin"]
)
def test_bad_uploads_raise_upload_rejected(explorer_ctx, upload_samples, kind):
    with pytest.raises(UploadRejected):
        image_actions.upload(explorer_ctx, str(upload_samples[kind]))


def test_uploads_without_a_checkpoint_say_so(explorer_ctx, upload_samples):
    ctx = replace(explorer_ctx, encoder=None)
    with pytest.raises(UploadRejected, match="--checkpoint"):
        image_actions.upload(ctx, str(upload_samples["good"]))
    assert "uploads are off" in ui.describe(ctx)
