"""Every interaction of the app in Debian's chromium (Playwright), click to result on screen.

Used by bench/app_load.py --browser against an app started by bench/timed_app.py: for each
interaction, the wall time from the click (Playwright's, after hovering) until its result is
on screen (the text that names it and every image of the new result loaded), and the
server-side time of the events it set off (bench/timed_app.py's log, read after each one).
Interactions: open a prototype (a row of the concept table), open an image (id + Open),
select a segment (a click on the overlay), similar segments (the "same prototype only"
switch), upload a photo, and, with --compare, a click on the Compare heatmap.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import overlay_point  # noqa: E402  (the UI tests' overlay geometry)

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
TIMEOUT_MS = 60_000

ALL_LOADED = """s => { const imgs = Array.from(document.querySelectorAll(s + ' img'));
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""
TEXT_HAS = "([s, t]) => (document.querySelector(s) || {}).innerText?.includes(t)"
TEXT_CHANGED = "([s, t]) => { const e = document.querySelector(s); return e && e.innerText !== t; }"


class ServerLog:
    """Reads the lines bench/timed_app.py appended since the last read."""

    def __init__(self, path: Path):
        self.path, self.offset = path, path.stat().st_size if path.exists() else 0

    def new(self) -> list[dict]:
        with self.path.open() as f:
            f.seek(self.offset)
            text = f.read()
            self.offset = f.tell()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _srcs(page, selector: str) -> list[str]:
    return page.evaluate(
        "s => Array.from(document.querySelectorAll(s + ' img')).map(i => i.src)", selector
    )


def _wait_new_images(page, selector: str, before: list[str]) -> None:
    """Until the images under `selector` differ from `before` and have all loaded."""
    page.wait_for_function(
        "([s, b]) => { const imgs = Array.from(document.querySelectorAll(s + ' img'));"
        " return imgs.length > 0 && imgs.map(i => i.src).join() !== b.join()"
        " && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=[selector, before],
        polling="raf",
    )


class Session:
    """One page of the app and the timings of what was done on it."""

    def __init__(self, page, log: ServerLog):
        self.page, self.log = page, log
        self.times: dict[str, list[dict]] = {}

    def timed(self, name: str, act: Callable[[], None], done: Callable[[], None]) -> None:
        self.page.wait_for_timeout(300)  # the previous result's late requests settle
        self.log.new()
        began = time.perf_counter()
        act()
        done()
        wall = time.perf_counter() - began
        self.page.wait_for_timeout(200)  # the events' log lines are written after the answer
        events = self.log.new()
        self.times.setdefault(name, []).append(
            {
                "wall_s": wall,
                "server_s": sum(e["process_s"] for e in events),
                "index_s": sum(e.get("index_s") or 0.0 for e in events),
                "events": [e["event"] for e in events],
            }
        )


def open_prototype(s: Session, row: int) -> None:
    cell = s.page.locator(f"#concept-table [data-testid='cell-{row}-0']")
    prototype = cell.inner_text().strip()
    before = _srcs(s.page, "#concept-gallery")

    def done() -> None:
        s.page.wait_for_function(TEXT_HAS, arg=["#prototype-summary h3", f"p{prototype}"])
        _wait_new_images(s.page, "#concept-gallery", before)

    s.timed("open a prototype", cell.click, done)


def open_image(s: Session, image_id: int) -> None:
    before = _srcs(s.page, "#overlay")

    def act() -> None:
        s.page.fill("#image-id input", str(image_id))
        s.page.click("#open-image")

    def done() -> None:
        s.page.wait_for_function(TEXT_HAS, arg=["#image-status", f"image {image_id} "])
        _wait_new_images(s.page, "#overlay", before)
        s.page.wait_for_function(ALL_LOADED, arg="#similar-gallery")

    s.timed("open an image", act, done)


def select_segment(s: Session, assignment: np.ndarray, selected: int) -> None:
    """Click the centre pixel of the largest segment other than `selected`."""
    others = [p for p in np.unique(assignment) if p != selected]
    if not others:
        return
    target = max(others, key=lambda p: int((assignment == p).sum()))
    rows, cols = np.nonzero(assignment == target)
    middle = len(rows) // 2
    x, y = overlay_point(s.page, assignment.shape, int(rows[middle]), int(cols[middle]))
    before = _srcs(s.page, "#similar-gallery")

    def done() -> None:
        s.page.wait_for_function(TEXT_HAS, arg=["#image-status", f"selected p{target}"])
        s.page.wait_for_function(ALL_LOADED, arg="#overlay")
        _wait_new_images(s.page, "#similar-gallery", before)

    s.timed("select a segment", lambda: s.page.mouse.click(x, y), done)


def similar_segments(s: Session) -> None:
    """Toggle "same prototype only": the similar segments of the selection again."""
    heading = s.page.inner_text("#similar-heading")
    before = _srcs(s.page, "#similar-gallery")
    box = s.page.get_by_label("same prototype only")

    def done() -> None:
        s.page.wait_for_function(
            "([b, h]) => { const imgs = Array.from("
            "document.querySelectorAll('#similar-gallery img'));"
            " return imgs.every(i => i.complete && i.naturalWidth > 0)"
            " && (imgs.map(i => i.src).join() !== b.join()"
            " || document.querySelector('#similar-heading').innerText !== h); }",
            arg=[before, heading],
            polling="raf",
        )

    s.timed("similar segments", box.click, done)


def upload(s: Session, photo: Path) -> None:
    before = _srcs(s.page, "#overlay")

    def act() -> None:
        with s.page.expect_file_chooser() as chooser:
            s.page.click("#upload-image")
        chooser.value.set_files(str(photo))

    def done() -> None:
        s.page.wait_for_function(TEXT_HAS, arg=["#image-status", f"upload {photo.name}"])
        _wait_new_images(s.page, "#overlay", before)
        s.page.wait_for_function(ALL_LOADED, arg="#similar-gallery")

    s.timed("upload and group a photo", act, done)


def heatmap_click(s: Session, k_a: int, k_b: int, row: int, col: int) -> None:
    """Click cell (row, col) of the Compare heatmap (plotly needs a hover first)."""
    page = s.page
    box = page.locator("#compare-heatmap .nsewdrag").bounding_box()
    x = box["x"] + (col + 0.5) * box["width"] / k_b
    y = box["y"] + (row + 0.5) * box["height"] / k_a
    text = page.inner_text("#compare-pair")
    before = _srcs(page, "#compare-ga")
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y)
    page.wait_for_timeout(300)

    def act() -> None:
        page.mouse.down()
        page.mouse.up()

    def done() -> None:
        page.wait_for_function(TEXT_CHANGED, arg=["#compare-pair", text], timeout=10_000)
        page.wait_for_function(
            "([s, b]) => { const imgs = Array.from(document.querySelectorAll(s + ' img'));"
            " return imgs.every(i => i.complete && i.naturalWidth > 0)"
            " && imgs.map(i => i.src).join() !== b.join(); }",
            arg=["#compare-ga", before],
            polling="raf",
        )

    s.timed("Compare heatmap click", act, done)


def _tab(page, name: str, ready: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_selector(ready)


def _round(s: Session, index, rng, photo: Path | None) -> None:
    """One of each Image-tab interaction on a random collection image, then the upload."""
    _tab(s.page, "Image", "#overlay img")
    image_id = index.image_id_at(int(rng.integers(index.num_images)))
    record = index.image(image_id)
    selected = int(record.slots.sort_values("area", ascending=False)["prototype"].iloc[0])
    open_image(s, image_id)
    select_segment(s, record.assignment, selected)
    similar_segments(s)
    if photo is not None:
        upload(s, photo)


def run_browser(
    url: str,
    log_path: Path,
    index_dir: Path,
    rounds: int = 10,
    photo: Path | None = None,
    compare: tuple[int, int] | None = None,
    seed: int = 0,
) -> dict:
    """`rounds` of every interaction on one page; -> {interaction: [timing dicts]} (the first
    round, which warms the browser's cache of the page's scripts, is dropped). `compare` is
    (K of the app's index, K of the --compare index) when the Compare tab exists."""
    from playwright.sync_api import sync_playwright

    from indexing import ConceptIndex

    index = ConceptIndex.open(index_dir)
    rng = np.random.default_rng(seed)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#concept-gallery img")
        page.wait_for_timeout(1500)  # the page's load event answers
        s = Session(page, ServerLog(log_path))
        for r in range(rounds + 1):
            _tab(page, "Concepts", "#concept-gallery img")
            open_prototype(s, 1 + r % min(index.num_prototypes - 1, 8))
            _round(s, index, rng, photo)
            if compare is not None:
                _tab(page, "Compare", "#compare-heatmap .nsewdrag")
                k_a, k_b = compare
                heatmap_click(s, k_a, k_b, (r + 1) % k_a, r % k_b)
        browser.close()
    return {name: runs[1:] for name, runs in s.times.items()}


def browser_summary(times: dict) -> dict:
    """p50 / p95 of the wall time, p50 of the server-side and index time, per interaction."""
    out = {}
    for name, runs in times.items():
        wall = np.array([r["wall_s"] for r in runs]) * 1000
        server = np.array([r["server_s"] for r in runs]) * 1000
        index = np.array([r["index_s"] for r in runs]) * 1000
        out[name] = {
            "runs": len(runs),
            "click_to_screen_p50_ms": round(float(np.percentile(wall, 50)), 1),
            "click_to_screen_p95_ms": round(float(np.percentile(wall, 95)), 1),
            "server_p50_ms": round(float(np.median(server)), 1),
            "index_p50_ms": round(float(np.median(index)), 1),
            "events": sorted({e for r in runs for e in r["events"]}),
        }
    return out
