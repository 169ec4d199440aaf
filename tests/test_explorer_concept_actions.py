"""What the Concepts tab and the API do to prototypes (explorer.concept_actions), over a real
small index, without a browser."""

from __future__ import annotations

import html
import json

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from explorer import concept_actions, image_actions, thumbnails
from explorer import view as views
from indexing import ConceptIndex

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]


def test_concept_table_has_every_prototype_in_each_sort_order(explorer_ctx):
    ctx = explorer_ctx
    assert concept_actions.sort_choices(ctx) == ["frequency", "area", "purity", "id"]
    for sort in concept_actions.sort_choices(ctx):
        table = concept_actions.concept_table(ctx, sort)
        assert sorted(table["prototype"]) == list(range(ctx.num_prototypes))
        assert {"name", "images", "slots", "area %", "class", "purity"} <= set(table.columns)
    freq = concept_actions.concept_table(ctx, "frequency")
    assert list(freq["images"]) == sorted(freq["images"], reverse=True)
    assert list(concept_actions.concept_table(ctx, "id")["prototype"]) == list(range(8))
    area = concept_actions.concept_table(ctx, "area")["area %"].dropna()
    assert list(area) == sorted(area, reverse=True)
    purity = concept_actions.concept_table(ctx, "purity")["purity"].dropna()
    assert list(purity) == sorted(purity, reverse=True)
    assert concept_actions.first_prototype(ctx) == int(freq["prototype"].iloc[0])


def test_show_prototype_gives_k_figure3_thumbnails(explorer_ctx):
    ctx = explorer_ctx
    prototype = concept_actions.first_prototype(ctx)
    about, items, hits, name, figure = concept_actions.show_prototype(ctx, prototype, 5)
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
    # the concept map as gr.Plot sends it, the prototype ringed (explorer.concept_maps)
    traces = json.loads(figure.plot)["data"]
    assert figure.type == "plotly" and isinstance(name, str)
    assert [t["customdata"] for t in traces if t["name"] == "selected"] == [[prototype]]


def test_thumbnail_is_the_mask_in_red_around_the_bbox(explorer_ctx):
    ctx = explorer_ctx
    hit = ctx.index.top_segments(concept_actions.first_prototype(ctx), 1).iloc[0]
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
    assert concept_actions.parse_prototype(explorer_ctx, "3:1712345678") == 3
    assert concept_actions.parse_prototype(explorer_ctx, 5.0) == 5
    for bad in ("x", None, 8, -1, float("nan"), float("inf"), "1e999"):
        with pytest.raises(gr.Error):
            concept_actions.parse_prototype(explorer_ctx, bad)


def test_names_persist_and_show_everywhere(explorer_ctx, explorer_data):
    ctx = explorer_ctx
    prototype = 6
    try:
        assert concept_actions.save_name(ctx, prototype, "  big   <sky>  ") == "big <sky>"
        again = ConceptIndex.open(explorer_data["index"])
        assert again.labels()[prototype] == "big <sky>"
        table = concept_actions.concept_table(ctx, "id")
        assert table.loc[prototype, "name"] == "big <sky>"
        choices = concept_actions.prototype_choices(table)
        assert choices[prototype][0].startswith("p6 · big <sky> (")
        assert concept_actions.prototype_summary(ctx, prototype).startswith(
            "### p6 · big &#60;sky&#62;"
        )
        figure = concept_actions.show_prototype(ctx, prototype, 2)[4]
        traces = json.loads(figure.plot)["data"]
        assert any("p6 · big &lt;sky&gt;" in h for t in traces for h in t.get("hovertext", []))
        image_id = int(ctx.index.top_segments(prototype, 1)["image_id"].iloc[0])
        view = views.open_collection(ctx, image_id, prototype)
        assert view.selected == prototype
        assert "p6 · big &lt;sky&gt;" in views.legend(ctx, view)
        assert "big <sky>" in list(views.segment_table(ctx, view)["name"])
        captions = [c for _, c in image_actions.show_similar(ctx, view, 3, True)[1]]
        assert len(captions) == 3 and all("p6 · big <sky>" in c for c in captions)
    finally:
        ctx.index.set_label(prototype, "")
    assert concept_actions.prototype_summary(ctx, prototype).startswith("### p6\n")


NASTY = "![t](http://127.0.0.1:9/x.png) <img src=x onerror=alert(1)> **bold** $$x$$"


def test_names_are_text_wherever_they_are_shown(explorer_ctx, monkeypatch):
    """A name is rendered literally in every Markdown line (summary, status, similar heading)
    and in the toast, so it can add no element to other viewers' pages."""
    markdown_it = pytest.importorskip("markdown_it")
    render = markdown_it.MarkdownIt("commonmark").render
    ctx = explorer_ctx
    prototype = concept_actions.first_prototype(ctx)
    toasts = []
    monkeypatch.setattr(gr, "Info", toasts.append)
    try:
        assert concept_actions.save_name(ctx, prototype, NASTY) == NASTY
        view = image_actions.initial_view(ctx)
        assert view.selected == prototype
        lines = {
            "summary": concept_actions.prototype_summary(ctx, prototype),
            "status": views.status(ctx, view),
            "heading": image_actions.show_similar(ctx, view, 2, False)[0],
        }
        for where, markdown in lines.items():
            rendered = render(markdown)
            for element in ("<img", "<a ", "<strong>bold", "<em>"):
                assert element not in rendered, (where, rendered)
            assert NASTY in html.unescape(rendered), (where, rendered)
        assert "<img" not in toasts[0] and NASTY in html.unescape(toasts[0])
        table = concept_actions.concept_table(ctx, "id")
        assert table.loc[prototype, "name"] == NASTY  # tables show text as it is
    finally:
        ctx.index.set_label(prototype, "")


def test_names_up_to_200_characters_are_kept_whole(explorer_ctx):
    ctx = explorer_ctx
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji: 5 code points
    names = ["x" * 57 + family + " and dogs", "d" * 200]  # the first was cut inside the emoji
    try:
        for name in names:
            assert concept_actions.save_name(ctx, 1, name) == name
            assert ctx.index.labels()[1] == name
        with pytest.raises(gr.Error, match="at most 200 characters; this one has 201"):
            concept_actions.save_name(ctx, 1, "e" * 201)
        assert ctx.index.labels()[1] == names[-1]  # unchanged
    finally:
        ctx.index.set_label(1, "")


def test_export_csv(explorer_ctx):
    path = concept_actions.export_table(explorer_ctx)
    assert str(explorer_ctx.cache_dir) in path
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table["prototype"]) == list(range(explorer_ctx.num_prototypes))
    assert {"name", "images", "slots", "class", "purity"} <= set(table.columns)


def test_export_coco_json_masks_are_the_prototype_in_each_image(explorer_ctx):
    ctx = explorer_ctx
    prototype = concept_actions.first_prototype(ctx)
    path = concept_actions.export_segments(ctx, prototype, 4)
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
