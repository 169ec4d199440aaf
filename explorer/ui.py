"""The whole app: header, tabs, cross-tab events, the concept-map click bridge, launch options.

`build_app(ctx, comparison, timeline)` returns the gr.Blocks without launching it (the Compare
and Timeline tabs only when app.py gives a comparison, a training run); `launch_options(ctx, ...)`
gives the keyword arguments for demo.launch that make serving safe (paths, upload size, bind
address).
"""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from explorer import (
    api,
    compare_tab,
    concept_actions,
    concepts_tab,
    evaluation_tab,
    image_actions,
    image_tab,
    timeline_tab,
)
from explorer.auth import ClientAddress, LoginGuard
from explorer.comparison import Comparison
from explorer.context import AppContext
from explorer.plot_click import plotly_click_js
from explorer.render import LEGEND_CSS
from explorer.timeline import Timeline

# Gradio keeps a copy of every upload (and of every export handed out) in its cache folder; it
# deletes those older than an hour, checking every 10 minutes (uploads are read at once; an
# export link works for an hour). Without delete_cache, Gradio never deletes them.
DELETE_CACHE = (600, 3600)  # (every seconds, older than seconds)

# a click on the concept map writes "<prototype>:<time>" into the hidden #map-click textbox
MAP_CLICK_JS = plotly_click_js(
    "concept-map",
    "map-click",
    "(Array.isArray(point.customdata) ? point.customdata[0] : point.customdata)",
)

CSS = (
    LEGEND_CSS
    + """
#header { margin-bottom: 4px; }
#header h1 { margin-bottom: 2px; }
#concept-gallery .caption-label, #similar-gallery .caption-label { font-size: 12px; }
#overlay img { cursor: crosshair; }
.bottom-aligned { align-items: flex-end !important; }
"""
)


def describe(ctx: AppContext) -> str:
    """The header: what the tool is, the collection, the model's shape and the counts."""
    manifest = ctx.index.manifest
    model = manifest.get("model") or {}
    counts = manifest.get("counts") or {}
    images = counts.get("images", ctx.index.num_images)
    slots = counts.get("slots", int(ctx.index.prototypes()["slots"].sum()))
    collection = "/".join(Path(str(ctx.index.image_root)).parts[-2:])
    arch = model.get("arch", "?")
    width = model.get("width")
    shape = f"{arch}" + (
        f" (width {width:g})" if isinstance(width, int | float) and width != 1 else ""
    )
    dim = model.get("dim", "?")
    size = model.get("input_size")
    model_text = f"{shape}, K = {ctx.num_prototypes} prototypes, D = {dim}" + (
        f", {size} px input" if size else ""
    )
    uploads = (
        "upload your own images in the Image tab"
        if ctx.uploads_enabled
        else "uploads are off (start with `--checkpoint` to enable them)"
    )
    return (
        "# SlotCon Explorer\n"
        "Concepts that a self-supervised SlotCon model discovered by grouping pixels into "
        f"prototypes. Collection **{html.escape(collection)}**: {images:,} images, {slots:,} "
        f"segments. Model: {html.escape(model_text)}. Browse prototypes, look inside images, "
        f"find similar segments; {uploads}."
    )


def build_app(
    ctx: AppContext, comparison: Comparison | None = None, timeline: Timeline | None = None
) -> gr.Blocks:
    """The Blocks of the app (not launched): the Compare tab with `comparison` (app.py
    --compare), the Timeline tab with `timeline` (app.py --run).

    Thumbnails and overlays are served in place from the cache dir (gr.set_static_paths, a
    process-wide Gradio setting): no hashing and copying of every file into Gradio's cache.
    """
    folders = [ctx.thumbs_dir, ctx.overlays_dir]
    if comparison is not None:  # model B's thumbnails (same cache, B's own folder)
        folders.append(comparison.other.thumbs_dir)
    if timeline is not None:  # the snapshots' indexes, built later: every index's thumbnails
        folders.append(ctx.thumbs_dir.parent)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths([str(folder) for folder in folders])
    with gr.Blocks(title="SlotCon Explorer", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(describe(ctx), elem_id="header")
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Concepts", id="concepts"):
                concepts = concepts_tab.build(ctx)
            with gr.Tab("Image", id="image"):
                image = image_tab.build(ctx)
            with gr.Tab("Evaluation", id="evaluation"):
                evaluation_tab.build(ctx)
            if comparison is not None:  # app.py --compare B
                with gr.Tab("Compare", id="compare"):
                    compare_tab.build(ctx, comparison)
                demo.load(None, js=compare_tab.HEATMAP_CLICK_JS)
            if timeline is not None:  # app.py --run RUN_DIR
                with gr.Tab("Timeline", id="timeline") as tab:
                    timeline_tab.build(ctx, timeline, tab)
        api.build(ctx)
        _wire_across(ctx, demo, tabs, concepts, image)
        demo.load(None, js=MAP_CLICK_JS)
    # events without their own concurrency_id (sorting, table clicks, names) run this many at once
    demo.queue(default_concurrency_limit=ctx.config.search_concurrency)
    return demo


def _wire_across(ctx: AppContext, demo: gr.Blocks, tabs, concepts, image) -> None:
    light = {"concurrency_id": "render", "concurrency_limit": ctx.config.search_concurrency}

    def open_from_concepts(hits, opacity, k, same, evt: gr.SelectData):
        view = image_actions.open_hit(ctx, hits, evt.index)
        return (
            view.image_id,
            *image_actions.present(ctx, view, opacity, k, same),
            gr.Tabs(selected="image"),
        )

    def show_in_concepts(view, k):
        if view is None or view.selected is None:
            return {}  # every output stays as it is
        prototype = int(view.selected)
        shown = concept_actions.show_prototype(ctx, prototype, k)
        return prototype, *shown, gr.Tabs(selected="concepts")

    def on_load(sort, prototype, k, view, opacity, sim_k, same):
        return (
            *concept_actions.refresh(ctx, sort, prototype),
            *concept_actions.show_prototype(ctx, prototype, k),
            *image_actions.present(ctx, view, opacity, sim_k, same),
        )

    concepts.gallery.select(
        open_from_concepts,
        [concepts.hits, *image.settings],
        [image.image_id, *image.outputs, tabs],
        api_visibility="undocumented",
        **light,
    )
    image.concept_button.click(
        show_in_concepts,
        [image.view, concepts.k],
        [concepts.prototype, *concepts.show_outputs, tabs],
        api_visibility="undocumented",
        **light,
    )
    demo.load(
        on_load,
        [concepts.sort, concepts.prototype, concepts.k, image.view, *image.settings],
        [concepts.table, concepts.prototype, *concepts.show_outputs, *image.outputs],
        api_visibility="private",
        **light,
    )


def launch_options(
    ctx: AppContext,
    index_dir: str | Path,
    checkpoint: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    auth: tuple[str, str] | None = None,
    comparison: Comparison | None = None,
    timeline: Timeline | None = None,
) -> dict:
    """demo.launch(**options): binds to `host` (loopback by default, never a share link),
    serves only the pictures it makes (thumbnails and overlays, static paths set by build_app)
    and the exports it hands out, blocks the index, its names file and the checkpoint, bounds
    upload size, and limits failed logins per client when `auth` is given.

    The collection's folder is not served: the app never hands out its originals, and it may
    hold other files (annotations, notes)."""
    index_dir = Path(index_dir).resolve()
    blocked = [index_dir, index_dir.with_name(index_dir.name + ".labels.json")]
    if checkpoint is not None:
        blocked.append(Path(checkpoint).resolve())
    if comparison is not None:  # index B: its tables and names file are not for download
        other = Path(comparison.other.index.root).resolve()
        blocked += [other, other.with_name(other.name + ".labels.json")]
    if timeline is not None:  # the run's checkpoints and log
        blocked.append(timeline.run_dir)
    return {
        "server_name": host,
        "server_port": port,
        "share": False,
        "auth": LoginGuard(*auth) if auth else None,
        "app_kwargs": {"middleware": [Middleware(ClientAddress)]},  # client address for auth
        "allowed_paths": [str(ctx.exports_dir)],
        "blocked_paths": [str(p) for p in blocked],
        "max_file_size": ctx.config.limits.max_bytes,
        "css": CSS,
        "theme": gr.themes.Soft(),
        "footer_links": ["api"],
        "show_error": False,
    }
