"""The app's callbacks over a real small index, without a browser."""

from __future__ import annotations

import html
import json
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from explorer import actions, api, thumbnails, ui
from explorer import view as views
from explorer.render import display_scale
from explorer.uploads import UploadRejected
from indexing import ConceptIndex

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]


def test_concept_table_has_every_prototype_in_each_sort_order(explorer_ctx):
    ctx = explorer_ctx
    assert actions.sort_choices(ctx) == ["frequency", "area", "purity", "id"]
    for sort in actions.sort_choices(ctx):
        table = actions.concept_table(ctx, sort)
        assert sorted(table["prototype"]) == list(range(ctx.num_prototypes))
        assert {"name", "images", "slots", "area %", "class", "purity"} <= set(table.columns)
    freq = actions.concept_table(ctx, "frequency")
    assert list(freq["images"]) == sorted(freq["images"], reverse=True)
    assert list(actions.concept_table(ctx, "id")["prototype"]) == list(range(8))
    area = actions.concept_table(ctx, "area")["area %"].dropna()
    assert list(area) == sorted(area, reverse=True)
    purity = actions.concept_table(ctx, "purity")["purity"].dropna()
    assert list(purity) == sorted(purity, reverse=True)
    assert actions.first_prototype(ctx) == int(freq["prototype"].iloc[0])


def test_show_prototype_gives_k_figure3_thumbnails(explorer_ctx):
    ctx = explorer_ctx
    prototype = actions.first_prototype(ctx)
    about, items, hits, name, figure = actions.show_prototype(ctx, prototype, 5)
    assert about.startswith(f"### p{prototype}") and "images" in about
    assert len(items) == len(hits) == 5
    top = ctx.index.top_segments(prototype, 5)
    assert [h["slot_id"] for h in hits] == list(top["slot_id"])
    for (path, caption), hit in zip(items, hits):
        assert caption.startswith(f"img {hit['image_id']} · ")
        with Image.open(path) as thumb:
            assert max(thumb.size) == ctx.config.thumbnail_side
            red = np.asarray(thumb.convert("RGB")).astype(int)
        assert ((red[..., 0] - red[..., 1]) > 80).any()  # the red mask is there
    assert len(figure.data) >= 2 and isinstance(name, str)


def test_thumbnail_is_the_mask_in_red_around_the_bbox(explorer_ctx):
    ctx = explorer_ctx
    hit = ctx.index.top_segments(actions.first_prototype(ctx), 1).iloc[0]
    record = ctx.index.image(int(hit.image_id))
    path = thumbnails.thumbnail(ctx, hit)
    assert path.parent == ctx.thumbs_dir and path.name == f"{int(hit.slot_id)}.jpg"
    assert thumbnails.thumbnail(ctx, hit) == path  # cached
    x, y, w, h = hit.bbox
    with Image.open(path) as thumb:
        aspect = thumb.width / thumb.height
    mask_wh = (min(record.width, max(w * 1.5, 32)), min(record.height, max(h * 1.5, 32)))
    assert aspect == pytest.approx(mask_wh[0] / mask_wh[1], rel=0.1)


def test_parse_prototype_accepts_map_clicks_and_refuses_nonsense(explorer_ctx):
    assert actions.parse_prototype(explorer_ctx, "3:1712345678") == 3
    assert actions.parse_prototype(explorer_ctx, 5.0) == 5
    for bad in ("x", None, 8, -1, float("nan"), float("inf"), "1e999"):
        with pytest.raises(gr.Error):
            actions.parse_prototype(explorer_ctx, bad)


def test_names_persist_and_show_everywhere(explorer_ctx, explorer_data):
    ctx = explorer_ctx
    prototype = 6
    try:
        assert actions.save_name(ctx, prototype, "  big   <sky>  ") == "big <sky>"
        again = ConceptIndex.open(explorer_data["index"])
        assert again.labels()[prototype] == "big <sky>"
        table = actions.concept_table(ctx, "id")
        assert table.loc[prototype, "name"] == "big <sky>"
        choices = actions.prototype_choices(table)
        assert choices[prototype][0].startswith("p6 · big <sky> (")
        assert actions.prototype_summary(ctx, prototype).startswith("### p6 · big &#60;sky&#62;")
        figure = actions.show_prototype(ctx, prototype, 2)[4]
        assert any("p6 · big &lt;sky&gt;" in h for t in figure.data for h in (t.hovertext or []))
        image_id = int(ctx.index.top_segments(prototype, 1)["image_id"].iloc[0])
        view = views.open_collection(ctx, image_id, prototype)
        assert view.selected == prototype
        assert "p6 · big &lt;sky&gt;" in views.legend(ctx, view)
        assert "big <sky>" in list(views.segment_table(ctx, view)["name"])
        captions = [c for _, c in actions.show_similar(ctx, view, 3, True)[1]]
        assert len(captions) == 3 and all("p6 · big <sky>" in c for c in captions)
    finally:
        ctx.index.set_label(prototype, "")
    assert actions.prototype_summary(ctx, prototype).startswith("### p6\n")


NASTY = "![t](http://127.0.0.1:9/x.png) <img src=x onerror=alert(1)> **bold** $$x$$"


def test_names_are_text_wherever_they_are_shown(explorer_ctx, monkeypatch):
    """A name is rendered literally in every Markdown line (summary, status, similar heading)
    and in the toast, so it can add no element to other viewers' pages."""
    markdown_it = pytest.importorskip("markdown_it")
    render = markdown_it.MarkdownIt("commonmark").render
    ctx = explorer_ctx
    prototype = actions.first_prototype(ctx)
    toasts = []
    monkeypatch.setattr(gr, "Info", toasts.append)
    try:
        assert actions.save_name(ctx, prototype, NASTY) == NASTY
        view = actions.initial_view(ctx)
        assert view.selected == prototype
        lines = {
            "summary": actions.prototype_summary(ctx, prototype),
            "status": views.status(ctx, view),
            "heading": actions.show_similar(ctx, view, 2, False)[0],
        }
        for where, markdown in lines.items():
            rendered = render(markdown)
            for element in ("<img", "<a ", "<strong>bold", "<em>"):
                assert element not in rendered, (where, rendered)
            assert NASTY in html.unescape(rendered), (where, rendered)
        assert "<img" not in toasts[0] and NASTY in html.unescape(toasts[0])
        table = actions.concept_table(ctx, "id")
        assert table.loc[prototype, "name"] == NASTY  # tables show text as it is
    finally:
        ctx.index.set_label(prototype, "")


def test_names_up_to_200_characters_are_kept_whole(explorer_ctx):
    ctx = explorer_ctx
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji: 5 code points
    names = ["x" * 57 + family + " and dogs", "d" * 200]  # the first was cut inside the emoji
    try:
        for name in names:
            assert actions.save_name(ctx, 1, name) == name
            assert ctx.index.labels()[1] == name
        with pytest.raises(gr.Error, match="at most 200 characters; this one has 201"):
            actions.save_name(ctx, 1, "e" * 201)
        assert ctx.index.labels()[1] == names[-1]  # unchanged
    finally:
        ctx.index.set_label(1, "")


def test_export_csv(explorer_ctx):
    path = actions.export_table(explorer_ctx)
    assert str(explorer_ctx.cache_dir) in path
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table["prototype"]) == list(range(explorer_ctx.num_prototypes))
    assert {"name", "images", "slots", "class", "purity"} <= set(table.columns)


def test_export_coco_json_masks_are_the_prototype_in_each_image(explorer_ctx):
    ctx = explorer_ctx
    prototype = actions.first_prototype(ctx)
    path = actions.export_segments(ctx, prototype, 4)
    document = json.loads(open(path).read())
    assert document["categories"][0]["id"] == prototype
    assert len(document["annotations"]) == len(document["images"]) == 4
    top = ctx.index.top_segments(prototype, 4)
    for annotation, hit in zip(document["annotations"], top.itertuples()):
        record = ctx.index.image(hit.image_id)
        rle = dict(annotation["segmentation"])
        rle["counts"] = rle["counts"].encode()
        decoded = mask_utils.decode(rle).astype(bool)
        assert np.array_equal(decoded, record.assignment == prototype)
        assert annotation["bbox"] == [float(v) for v in hit.bbox]
        assert annotation["score"] == pytest.approx(float(hit.score), abs=1e-6)
    image = document["images"][0]
    assert (ctx.index.image_root / image["file_name"]).is_file()


def test_initial_view_selects_the_first_prototypes_best_segment(explorer_ctx):
    ctx = explorer_ctx
    view = actions.initial_view(ctx)
    prototype = actions.first_prototype(ctx)
    assert view.source == "collection" and view.selected == prototype
    assert view.image_id == int(ctx.index.top_segments(prototype, 1)["image_id"].iloc[0])
    shown = actions.present(ctx, view, 0.5, 4, False)
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
        actions.open_image(explorer_ctx, 99999)
    with pytest.raises(gr.Error, match="No image"):
        actions.open_image(explorer_ctx, "abc")


def test_similar_for_a_collection_segment_and_same_prototype_filter(explorer_ctx):
    ctx = explorer_ctx
    view = actions.initial_view(ctx)
    hits = actions.similar_segments(ctx, view, 6, False)
    assert len(hits) == 6 and list(hits["similarity"]) == sorted(hits["similarity"], reverse=True)
    same = actions.similar_segments(ctx, view, 6, True)
    assert set(same["prototype"]) == {view.selected}
    assert actions.similar_segments(ctx, view.with_selection(None), 6, False).empty
    assert "Click a segment" in actions.show_similar(ctx, None, 3, False)[0]


def test_upload_groups_the_image_and_finds_similar_segments(explorer_ctx, upload_samples):
    ctx = explorer_ctx
    view = actions.upload(ctx, str(upload_samples["exif"]))
    assert view.source == "upload" and view.rgb.shape == (80, 40, 3)
    assert view.assignment.shape == (80, 40) and view.selected is not None
    assert abs(view.segments["area"].sum() - 1) < 1e-5
    overlay = views.draw(ctx, view, 0.5)
    factor = display_scale(80, 40)
    assert overlay.shape == (80 * factor, 40 * factor, 3)
    hits = actions.similar_segments(ctx, view, 5, True)
    assert len(hits) == 5 and set(hits["prototype"]) == {view.selected}
    shown = actions.present(ctx, view, 0.3, 5, False)
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
        actions.upload(explorer_ctx, str(upload_samples[kind]))


def test_uploads_without_a_checkpoint_say_so(explorer_ctx, upload_samples):
    ctx = replace(explorer_ctx, encoder=None)
    with pytest.raises(UploadRejected, match="--checkpoint"):
        actions.upload(ctx, str(upload_samples["good"]))
    assert "uploads are off" in ui.describe(ctx)


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
    table = actions.scores_table(actions.mappings_only(evaluation))
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
    assert actions.sort_choices(ctx) == ["frequency", "area", "id"]
    table = actions.concept_table(ctx, "purity")  # falls back to frequency
    assert "class" not in table and "purity" not in table
    assert "mostly" not in actions.prototype_summary(ctx, actions.first_prototype(ctx))
    demo = ui.build_app(ctx)
    notes = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "evaluation-none"]
    assert len(notes) == 1 and "without annotations" in notes[0].value
