"""The README's screenshots: the Concepts tab and the Image tab of a running app, in Debian's
chromium driven by Playwright (as the browser tests; Playwright never downloads a browser).

    .venv/bin/python app.py --index data/index-demo --checkpoint assets/demo_encoder.pt &
    .venv/bin/python bench/screenshots.py --url http://127.0.0.1:7860 --out docs

Writes screenshot_concepts.png (the first prototype's top segments) and screenshot_image.png (the
image of its second-best segment, opened from the gallery, with the grouping overlay); with
`--timeline-prototype P` (an app started with --run) also screenshot_timeline.png (the Timeline
tab for prototype P).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
FLAGS += ["--disable-background-networking"]
ALL_IMAGES_LOADED = "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


def take(url: str, out: Path, prototype_row: int, timeline_prototype: int | None) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.wait_for_selector("#concept-gallery img")
        page.wait_for_timeout(3000)  # the load event's own answer arrives first
        if prototype_row:
            page.locator(f"#concept-table [data-testid='cell-{prototype_row}-0']").click()
            page.wait_for_timeout(3000)
        page.wait_for_function(ALL_IMAGES_LOADED)
        page.screenshot(path=str(out / "screenshot_concepts.png"), full_page=True)
        page.locator("#concept-gallery button.thumbnail-item").nth(1).click()
        page.wait_for_function(
            "() => /^image \\d+/.test(document.querySelector('#image-status')?.innerText || '')"
        )
        page.wait_for_timeout(2000)
        page.wait_for_function(ALL_IMAGES_LOADED)
        page.screenshot(path=str(out / "screenshot_image.png"), full_page=True)
        if timeline_prototype is not None:
            page.get_by_role("tab", name="Timeline").click()
            page.locator("#timeline-prototype input").fill(f"p{timeline_prototype} ")
            page.keyboard.press("ArrowDown")
            page.keyboard.press("Enter")
            page.wait_for_function(
                "t => (document.querySelector('#timeline-final') || {}).innerText?.includes(t)",
                arg=f"p{timeline_prototype}",
            )
            page.wait_for_timeout(2000)
            page.wait_for_function(ALL_IMAGES_LOADED)
            page.screenshot(path=str(out / "screenshot_timeline.png"), full_page=True)
        browser.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860", help="the running app")
    parser.add_argument("--out", default="docs", help="folder for the two PNGs")
    parser.add_argument(
        "--row", type=int, default=0, help="concept table row to select first (0: as opened)"
    )
    parser.add_argument(
        "--timeline-prototype",
        type=int,
        default=None,
        help="also screenshot the Timeline tab for this prototype (app started with --run)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    take(args.url, Path(args.out), args.row, args.timeline_prototype)
    print(f"wrote {args.out}/screenshot_concepts.png and {args.out}/screenshot_image.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
