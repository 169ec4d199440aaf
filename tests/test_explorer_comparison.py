"""app.py --compare: the Compare tab's functions, its API endpoints through gradio_client, the
tab in Debian's chromium (Playwright), and indexes of different images refused."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import new_page, save_random_encoder
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from indexing.compare.correspondence import ImageSetMismatch

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def compare_data(explorer_data, tmp_path_factory) -> dict:
    """Index B of the explorer's scenes (K = 5, ids in path order) and an index of 50 of them."""
    from indexing import BuildConfig, build_index

    root = tmp_path_factory.mktemp("compare-app")
    checkpoint = save_random_encoder(root / "k5.pt", seed=11, num_prototypes=5)
    config = BuildConfig(
        checkpoint=checkpoint,
        images=explorer_data["images"],
        out=root / "b",
        device="cpu",
        workers=0,
    )
    build_index(config)
    subset = root / "subset"
    subset.mkdir()
    for path in sorted(explorer_data["images"].glob("*.jpg"))[:50]:
        shutil.copyfile(path, subset / path.name)
    build_index(dataclasses.replace(config, images=subset, out=root / "subset-index"))
    return {"b": config.out, "subset": root / "subset-index", "checkpoint_b": checkpoint}


@pytest.fixture(scope="module")
def compare_ctx(explorer_data, tmp_path_factory):
    from explorer import open_context

    return open_context(
        explorer_data["index"],
        explorer_data["checkpoint"],
        tmp_path_factory.mktemp("compare-cache"),
        device="cpu",
    )


@pytest.fixture(scope="module")
def comparison(compare_ctx, compare_data):
    """Model B beside the app's model, as app.py --compare builds it."""
    from explorer.comparison import open_comparison

    return open_comparison(compare_ctx, compare_data["b"])


@pytest.fixture(scope="module")
def compare_app(explorer_data, compare_ctx, comparison):
    """The app with the Compare tab, launched in this process; yields its URL."""
    from conftest import launched

    with launched(compare_ctx, explorer_data, comparison=comparison) as url:
        yield url


@pytest.fixture(scope="module")
def client(compare_app):
    return Client(compare_app, verbose=False)


def test_comparison_holds_the_correspondence(compare_ctx, comparison):
    assert comparison.result.shape == (8, 5) and comparison.result.images == 60
    k_a = compare_ctx.num_prototypes
    for a, b in zip(comparison.matching["a"], comparison.matching["b"]):
        assert (comparison.other.colours[b] == compare_ctx.colours[a]).all()  # matched: same
    unmatched = sorted(set(range(5)) - set(comparison.matching["b"]))
    for b in unmatched:  # unmatched B prototypes wear colours no A prototype has
        assert not (compare_ctx.colours[:k_a] == comparison.other.colours[b]).all(axis=1).any()
    assert sorted(comparison.order_a) == list(range(8))
    assert sorted(comparison.order_b) == list(range(5))


def test_image_pair_table(compare_ctx, comparison):
    from explorer.comparison import image_pair

    image_id = compare_ctx.index.image_ids()[3]
    over_a, over_b, table = image_pair(compare_ctx, comparison, image_id)
    assert over_a.shape == over_b.shape and over_a.dtype == np.uint8
    assert list(table.columns) == ["a", "b", "area_a %", "area_b %", "iou_here", "iou_collection"]
    assert table["area_a %"].sum() == pytest.approx(100, abs=1)
    assert table["area_b %"].sum() == pytest.approx(100, abs=1)


def test_different_image_sets_are_refused(explorer_data, compare_data, tmp_path, capsys):
    from explorer import open_context
    from explorer.comparison import open_comparison

    ctx = open_context(explorer_data["index"], None, tmp_path)
    with pytest.raises(ImageSetMismatch, match="10 images differ"):
        open_comparison(ctx, compare_data["subset"])
    import app

    status = app.main(
        ["--index", str(explorer_data["index"]), "--compare", str(compare_data["subset"])]
        + ["--cache", str(tmp_path / "cache")]
    )
    assert status == 1
    assert "10 images differ (10 only in A, 0 only in B, 50 in both" in capsys.readouterr().err


def test_endpoints_are_named(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/compare_image", "/correspondence"} <= set(endpoints)


def test_correspondence_endpoint(client, comparison):
    table = client.predict(api_name="/correspondence")
    assert table["headers"] == ["a", "b", "pixels", "iou", "matched"]
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert sum(r["pixels"] for r in rows) == int(comparison.result.counts.sum())
    matched = [(r["a"], r["b"]) for r in rows if r["matched"]]
    expected = comparison.matching
    assert sorted(matched) == sorted(zip(expected["a"].tolist(), expected["b"].tolist()))


def test_compare_image_endpoint(client, compare_ctx):
    image_id = compare_ctx.index.image_ids()[5]
    over_a, over_b, table = client.predict(image_id, api_name="/compare_image")
    with Image.open(over_a) as a, Image.open(over_b) as b:
        assert a.size == b.size and a.format == "PNG"
    assert table["headers"][:2] == ["a", "b"] and table["data"]
    with pytest.raises(AppError, match="No image 999999"):
        client.predict(999999, api_name="/compare_image")


# ---- the tab in a browser -----------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_compare_tab_in_the_browser(browser, compare_app, comparison):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    ARTIFACTS.mkdir(exist_ok=True)
    page, errors = new_page(browser)
    page.goto(compare_app)
    page.wait_for_selector("#concept-gallery img")
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_selector("#compare-ga img")
    page.wait_for_selector("#compare-overlay-a img")
    first = f"A{int(comparison.order_a[0])}"
    assert page.inner_text("#compare-pair").startswith(first)
    # click the heatmap cell of row 1, column 0 (rows top to bottom, matching order)
    page.wait_for_selector("#compare-heatmap .nsewdrag")
    box = page.locator("#compare-heatmap .nsewdrag").bounding_box()
    k_a, k_b = comparison.result.shape
    x = box["x"] + 0.5 * box["width"] / k_b
    y = box["y"] + 1.5 * box["height"] / k_a
    a, b = int(comparison.order_a[1]), int(comparison.order_b[0])
    for _ in range(3):  # plotly takes a click only after a real hover; retry a missed one
        page.mouse.move(x - 3, y - 3)
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        page.mouse.down()
        page.wait_for_timeout(80)
        page.mouse.up()
        try:
            page.wait_for_function(
                "t => (document.querySelector('#compare-pair') || {}).innerText?.startsWith(t)",
                arg=f"A{a} ",
                timeout=10_000,
            )
            break
        except PlaywrightTimeout:  # plotly did not register that click: hover and retry
            continue
    assert page.inner_text("#compare-pair").startswith(f"A{a} ")
    assert f"B{b} " in page.inner_text("#compare-pair")
    page.screenshot(path=str(ARTIFACTS / "compare_tab.png"), full_page=True)
    page.close()
    assert not errors, errors
