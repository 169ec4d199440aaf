"""Rendering helpers of the app: palette, grouping overlay, Figure-3 masks, crops, legend."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.render import (
    DIM,
    HIGHLIGHT,
    LegendEntry,
    boundaries,
    context_box,
    grouping_overlay,
    legend_html,
    markdown_text,
    mask_bbox,
    palette,
    prototype_title,
    segment_thumbnail,
)
from indexing.figure import MASK_ALPHA, mask_overlay


@pytest.fixture()
def scene():
    """A 40 x 60 grey image split into prototype 0 (left), 1 (right) and 2 (a box)."""
    image = np.full((40, 60, 3), 100, np.uint8)
    assignment = np.zeros((40, 60), np.int16)
    assignment[:, 30:] = 1
    assignment[10:20, 5:15] = 2
    return image, assignment


def test_palette_is_fixed_distinct_and_uint8():
    for k in (1, 8, 20, 21, 256):
        colours = palette(k)
        assert colours.shape == (k, 3) and colours.dtype == np.uint8
        assert len({tuple(c) for c in colours}) == k
    assert np.array_equal(palette(256)[:8], palette(8))
    assert np.array_equal(palette(64), palette(64))


def test_overlay_blends_each_pixel_with_its_prototype_colour(scene):
    image, assignment = scene
    colours = palette(3)
    for opacity in (0.0, 0.25, 0.5, 1.0):
        out = grouping_overlay(image, assignment, colours, opacity, draw_boundaries=False)
        assert out.shape == image.shape and out.dtype == np.uint8
        expected = np.rint((1 - opacity) * 100 + opacity * colours[assignment].astype(float))
        assert np.array_equal(out, expected.astype(np.uint8))
    plain = grouping_overlay(image, assignment, colours, 0.0, draw_boundaries=False)
    assert np.array_equal(plain, image)
    # out-of-range opacity is clipped, not extrapolated
    assert np.array_equal(
        grouping_overlay(image, assignment, colours, 3.0, False),
        grouping_overlay(image, assignment, colours, 1.0, False),
    )


def test_boundaries_are_drawn_white_between_segments_only(scene):
    image, assignment = scene
    edges = boundaries(assignment)
    assert edges[25, 30] and not edges[25, 29] and not edges[25, 45]  # left/right border
    assert edges[10, 8] and edges[15, 15] and not edges[15, 10]  # the box's outline
    out = grouping_overlay(image, assignment, palette(3), 0.5)
    assert (out[edges] == 255).all()
    assert not (out[~edges] == 255).all(axis=-1).any()


def test_thicker_boundaries_on_large_images():
    assignment = np.zeros((800, 800), np.int16)
    assignment[:, 400:] = 1
    assert boundaries(assignment, thickness=2)[0, 398:402].sum() == 3
    out = grouping_overlay(np.zeros((800, 800, 3), np.uint8), assignment, palette(2), 0.5)
    assert (out[0, 399:402] == 255).all()


def test_highlight_dims_the_rest_and_outlines_the_selection(scene):
    image, assignment = scene
    colours = palette(3)
    base = grouping_overlay(image, assignment, colours, 0.5, draw_boundaries=False)
    lit = grouping_overlay(image, assignment, colours, 0.5, draw_boundaries=False, highlight=2)
    assert np.array_equal(lit[15, 10], base[15, 10])  # inside the selected box: unchanged
    far = lit[35, 50].astype(float)
    assert np.allclose(far, np.rint(base[35, 50] * DIM), atol=1)
    assert tuple(lit[9, 10]) == HIGHLIGHT  # just outside the box
    assert tuple(lit[15, 15]) == HIGHLIGHT


def test_overlay_rejects_mismatched_shapes(scene):
    image, assignment = scene
    with pytest.raises(ValueError, match="differ"):
        grouping_overlay(image[:10], assignment, palette(3))


def test_mask_overlay_is_red_at_alpha_06_inside_and_unchanged_outside():
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    out = mask_overlay(image, mask)
    assert np.array_equal(out[~mask], image[~mask])
    expected = np.rint((1 - MASK_ALPHA) * image[mask] + MASK_ALPHA * np.array([255, 0, 0]))
    assert np.array_equal(out[mask], expected.astype(np.uint8))


def test_context_box_adds_a_quarter_on_each_side():
    assert context_box([40, 40, 20, 20], (200, 100), min_side=1) == (35, 35, 65, 65)
    x0, y0, x1, y1 = context_box([40, 40, 40, 20], (200, 100), min_side=1)
    assert (x0, y0, x1, y1) == (30, 35, 90, 65)


def test_context_box_stays_inside_and_keeps_a_minimum_size():
    assert context_box([0, 0, 10, 10], (100, 80)) == (0, 0, 32, 32)  # grown to 32, shifted in
    assert context_box([95, 75, 5, 5], (100, 80)) == (68, 48, 100, 80)
    assert context_box([0, 0, 100, 80], (100, 80)) == (0, 0, 100, 80)  # whole image: clipped
    assert context_box([2, 2, 1, 1], (8, 6)) == (0, 0, 8, 6)  # image smaller than min_side


def test_mask_bbox():
    mask = np.zeros((10, 12), bool)
    assert mask_bbox(mask) == [0, 0, 0, 0]
    mask[2:5, 3:9] = True
    assert mask_bbox(mask) == [3, 2, 6, 3]


def test_segment_thumbnail_crops_around_the_segment_and_scales():
    image = np.full((200, 300, 3), 50, np.uint8)
    mask = np.zeros((200, 300), bool)
    mask[80:120, 100:180] = True  # 80 x 40 box
    thumb = segment_thumbnail(image, mask, side=120)
    assert thumb.size == (120, 60)  # (80 + 40) x (40 + 20) context, scaled to 120 wide
    pixels = np.asarray(thumb)
    centre, corner = pixels[30, 60], pixels[2, 2]
    assert centre[0] > 150 and centre[1] < 40  # red over the mask
    assert tuple(corner) == (50, 50, 50)  # context unchanged
    assert segment_thumbnail(image, mask, [100, 80, 80, 40], side=120).size == (120, 60)


def test_legend_lists_segments_largest_first_with_escaped_names():
    entries = [
        LegendEntry(3, "", (255, 0, 0), 0.1),
        LegendEntry(7, "<b>sky</b> & sea", (0, 0, 255), 0.6),
    ]
    text = legend_html(entries, selected=3)
    assert text.index("p7") < text.index("p3")
    assert "&lt;b&gt;sky&lt;/b&gt; &amp; sea" in text and "<b>sky" not in text
    assert "#ff0000" in text and "#0000ff" in text
    assert "60.0%" in text and "class='selected'" in text
    assert "No segments" in legend_html([])
    assert prototype_title(4) == "p4" and prototype_title(4, "dog") == "p4 · dog"


def test_markdown_text_is_shown_literally():
    markdown_it = pytest.importorskip("markdown_it")
    import html

    name = "![t](http://127.0.0.1:9/x.png) <img src=x onerror=alert(1)> **bold** _i_ `c` # [l](x)"
    rendered = markdown_it.MarkdownIt("commonmark").render(f"### {markdown_text(name)}\n")
    assert rendered.startswith("<h3>") and rendered.count("<") == 2  # <h3> and </h3> only
    assert html.unescape(rendered[4 : rendered.index("</h3>")]) == name
    assert markdown_text("é 🐕‍🦺 ok") == "é 🐕‍🦺 ok"  # only ASCII punctuation is replaced
    assert markdown_text("two\nlines   here") == "two lines here"  # never a new block
