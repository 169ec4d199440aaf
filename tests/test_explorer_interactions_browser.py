"""Every interaction of the app completes in Debian's chromium: open a prototype (a table row,
the dropdown, the Image tab's "Show this prototype in Concepts"), open an image, select a
segment, similar segments, upload and group a 640 x 480 photo. Nothing here is timed: how long
each takes is bench/app_load.py --browser's job (docs/BENCHMARKS.md). The Compare heatmap
click is tests/test_explorer_comparison.py's browser test."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import new_page
from PIL import Image

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]

LOADED = """s => { const imgs = Array.from(document.querySelectorAll(s + ' img'));
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""
HAS = "([s, t]) => (document.querySelector(s) || {}).innerText?.includes(t)"


@pytest.fixture()
def page(browser, explorer_app):
    page, errors = new_page(browser)
    page.goto(explorer_app)
    page.wait_for_selector("#concept-gallery img")
    page.wait_for_timeout(1000)  # the page's load event answers first
    yield page
    page.close()
    assert not errors, errors


def photo_640x480(folder) -> str:
    """A 640 x 480 photograph (the centre of scikit-image's motorcycle, shipped in its wheel)."""
    import skimage.data

    source = Image.open(f"{skimage.data.__file__.rsplit('/', 1)[0]}/motorcycle_left.png")
    left, top = (source.width - 640) // 2, (source.height - 480) // 2
    path = folder / "photo_640x480.jpg"
    source.convert("RGB").crop((left, top, left + 640, top + 480)).save(path, quality=90)
    return str(path)


def other_prototype(explorer_ctx, shown: int) -> int:
    table = explorer_ctx.index.prototypes()
    return int(table[(table["images"] > 0) & (table["prototype"] != shown)]["prototype"].iloc[0])


def test_every_interaction_completes(page, explorer_ctx, tmp_path):
    # open a prototype: a row of the table, then one picked from the dropdown
    cell = page.locator("#concept-table [data-testid='cell-1-0']")
    row_prototype = int(cell.inner_text().strip())
    cell.click()
    page.wait_for_function(HAS, arg=["#prototype-summary h3", f"p{row_prototype}"])
    page.wait_for_function(LOADED, arg="#concept-gallery")
    picked = other_prototype(explorer_ctx, row_prototype)
    page.click("#prototype-pick input")
    page.get_by_role("option", name=f"p{picked} ", exact=False).first.click()
    page.wait_for_function(HAS, arg=["#prototype-summary h3", f"p{picked}"])
    page.wait_for_function(LOADED, arg="#concept-gallery")

    # open an image by id
    page.get_by_role("tab", name="Image").click()
    index = explorer_ctx.index
    image_id = next(  # an image of several segments
        i for i in index.image_ids() if len(np.unique(index.assignment(i))) >= 2
    )
    page.fill("#image-id input", str(image_id))
    page.click("#open-image")
    page.wait_for_function(HAS, arg=["#image-status", f"image {image_id} "])
    page.wait_for_function(LOADED, arg="#similar-gallery")

    # select a segment: a click in the second largest one (the largest is selected on opening)
    assignment = index.assignment(image_id)
    prototypes, areas = np.unique(assignment, return_counts=True)
    target = int(prototypes[np.argsort(-areas, kind="stable")[1]])
    rows, cols = np.nonzero(assignment == target)
    box = page.locator("#overlay img").bounding_box()
    natural = page.evaluate(
        "() => { const i = document.querySelector('#overlay img');"
        " return [i.naturalWidth, i.naturalHeight]; }"
    )
    scale = min(box["width"] / natural[0], box["height"] / natural[1], 1.0)
    left = box["x"] + (box["width"] - natural[0] * scale) / 2
    top = box["y"] + (box["height"] - natural[1] * scale) / 2
    height, width = assignment.shape
    i = len(rows) // 2
    page.mouse.click(
        left + (cols[i] + 0.5) / width * natural[0] * scale,
        top + (rows[i] + 0.5) / height * natural[1] * scale,
    )
    page.wait_for_function(HAS, arg=["#image-status", f"selected p{target}"])

    # similar segments: within the same prototype only
    page.get_by_label("same prototype only").click()
    page.wait_for_function(LOADED, arg="#similar-gallery")

    # the selected prototype in the Concepts tab
    page.get_by_role("button", name="Show this prototype in Concepts").click()
    page.wait_for_function(HAS, arg=["#prototype-summary h3", f"p{target}"])
    page.wait_for_function(LOADED, arg="#concept-gallery")

    # upload and group a 640 x 480 photo
    page.get_by_role("tab", name="Image").click()
    with page.expect_file_chooser() as chooser:
        page.click("#upload-image")
    chooser.value.set_files(photo_640x480(tmp_path))
    page.wait_for_function(HAS, arg=["#image-status", "upload photo_640x480.jpg"])
    page.wait_for_function(LOADED, arg="#overlay")
