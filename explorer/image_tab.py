"""Image tab: a collection image or an upload, its grouping overlay, legend and segments; clicking
a segment selects it and fills the similar-segments panel below."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from explorer import similar_panel
from explorer import view as views
from explorer.concepts_tab import first_prototype
from explorer.context import AppContext
from explorer.similar_panel import SimilarPanel
from explorer.uploads import UploadRejected, read_upload
from explorer.view import ImageView


def present(ctx: AppContext, view: ImageView, opacity: float, k: int, same_prototype: bool):
    """Everything the tab shows for `view`: (state, overlay, legend, segment table, status,
    similar heading, similar gallery, similar hits)."""
    return (
        view,
        views.overlay_file(ctx, views.draw(ctx, view, opacity)),
        views.legend(ctx, view),
        views.segment_table(ctx, view),
        views.status(ctx, view),
        *similar_panel.show(ctx, view, k, same_prototype),
    )


def initial_view(ctx: AppContext) -> ImageView:
    """The first prototype's best segment, selected in its image (or the first image)."""
    prototype = first_prototype(ctx)
    hits = ctx.index.top_segments(prototype, 1)
    if len(hits):
        return views.open_collection(ctx, int(hits["image_id"].iloc[0]), prototype)
    return views.open_collection(ctx, ctx.index.image_ids()[0])


def open_image(ctx: AppContext, image_id, selected: int | None = None) -> ImageView:
    try:
        image_id = int(image_id)
        return views.open_collection(ctx, image_id, selected)
    except (TypeError, ValueError, KeyError) as error:
        raise unknown_image(ctx, image_id) from error


def unknown_image(ctx: AppContext, image_id) -> gr.Error:
    """The message for an image id the collection does not hold."""
    ids = ctx.index.image_ids()
    return gr.Error(
        f"No image {image_id!r} in this collection ({len(ids)} images, ids {min(ids)} to "
        f"{max(ids)})."
    )


def open_hit(ctx: AppContext, hits: list[dict], index: int) -> ImageView:
    """A clicked gallery thumbnail -> its image with the thumbnail's segment selected."""
    hit = hits[index]
    return open_image(ctx, hit["image_id"], hit["prototype"])


def upload(ctx: AppContext, path: str | None, progress=None) -> ImageView:
    """Validate and group an uploaded file. Raises UploadRejected with a message for the user."""
    if ctx.encoder is None:
        raise UploadRejected(
            "Uploads need the model: start the app with --checkpoint FILE (the checkpoint the "
            "index was built with)."
        )
    step = progress or (lambda *a, **k: None)
    step(0.05, desc="checking the file")
    name = Path(str(path)).name if path else "image"
    accepted = read_upload(path, ctx.config.limits)
    step(0.3, desc="grouping with the model")
    try:
        return views.open_upload(ctx, accepted.image, name, accepted.original_size)
    except (RuntimeError, ValueError) as error:  # e.g. out of memory on a GPU
        raise UploadRejected(f"The model could not process this image ({error}).") from error


@dataclass
class ImageTab:
    image_id: gr.Number
    open_button: gr.Button
    random_button: gr.Button
    upload_button: gr.UploadButton
    opacity: gr.Slider
    overlay: gr.Image
    legend: gr.HTML
    segments: gr.Dataframe
    status: gr.Markdown
    concept_button: gr.Button  # "show this prototype in Concepts", wired by explorer.ui
    view: gr.State  # ImageView
    similar: SimilarPanel

    @property
    def outputs(self) -> list:
        return [
            self.view,
            self.overlay,
            self.legend,
            self.segments,
            self.status,
            *self.similar.outputs,
        ]

    @property
    def settings(self) -> list:
        return [self.opacity, self.similar.k, self.similar.same_prototype]


def build(ctx: AppContext) -> ImageTab:
    start = initial_view(ctx)
    shown = present(ctx, start, 0.5, ctx.config.default_k, False)
    ids = ctx.index.image_ids()
    with gr.Row(equal_height=False, elem_classes="bottom-aligned"):
        image_id = gr.Number(
            value=start.image_id,
            precision=0,
            label=f"Collection image id ({min(ids)} to {max(ids)})",
            scale=2,
            min_width=160,
            elem_id="image-id",
        )
        open_button = gr.Button("Open", scale=1, min_width=80, elem_id="open-image")
        random_button = gr.Button("Random image", scale=1, min_width=120, elem_id="random-image")
        upload_button = gr.UploadButton(
            "Upload an image" if ctx.uploads_enabled else "Upload (needs --checkpoint)",
            file_types=["image"],
            type="filepath",
            scale=2,
            min_width=160,
            variant="primary",
            elem_id="upload-image",
        )
        opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Overlay opacity", scale=2)
    status = gr.Markdown(shown[4], latex_delimiters=[], elem_id="image-status")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            overlay = gr.Image(
                shown[1],
                format="png",
                interactive=False,
                show_label=False,
                height=520,
                buttons=["download", "fullscreen"],
                elem_id="overlay",
            )
        with gr.Column(scale=2, min_width=300):
            legend = gr.HTML(shown[2], label="Legend", elem_id="legend")
            table = gr.Dataframe(
                shown[3],
                interactive=False,
                max_height=300,
                label="Segments (click a row to select)",
                elem_id="segments",
            )
            concept_button = gr.Button("Show this prototype in Concepts", size="sm")
    similar = similar_panel.build(ctx)
    tab = ImageTab(
        image_id,
        open_button,
        random_button,
        upload_button,
        opacity,
        overlay,
        legend,
        table,
        status,
        concept_button,
        gr.State(start),
        similar,
    )
    _wire(ctx, tab)
    return tab


def _wire(ctx: AppContext, tab: ImageTab) -> None:
    heavy = {"concurrency_id": "model", "concurrency_limit": ctx.config.model_concurrency}
    light = {"concurrency_id": "render", "concurrency_limit": ctx.config.search_concurrency}
    quiet = {"api_visibility": "undocumented"}
    inputs = [tab.view, *tab.settings]

    def on_open(image_id, view, opacity, k, same):
        return present(ctx, open_image(ctx, image_id), opacity, k, same)

    def on_random(view, opacity, k, same):
        new = views.open_collection(ctx, views.random_image_id(ctx))
        return (new.image_id, *present(ctx, new, opacity, k, same))

    def on_upload(path, view, opacity, k, same, progress=gr.Progress()):  # noqa: B008 (gradio idiom)
        try:
            new = upload(ctx, path, progress)
        except UploadRejected as error:
            gr.Warning(str(error))
            message = f"⚠️ **Upload refused:** {error}  \nStill showing {views.status(ctx, view)}"
            return (gr.skip(),) * 4 + (message,) + (gr.skip(),) * len(tab.similar.outputs)
        progress(0.8, desc="finding similar segments")
        return present(ctx, new, opacity, k, same)

    def on_click(view, opacity, k, same, evt: gr.SelectData):
        x, y = evt.index
        new = view.with_selection(views.prototype_at(ctx, view, x, y))
        return present(ctx, new, opacity, k, same)

    def on_row(view, opacity, k, same, evt: gr.SelectData):
        new = view.with_selection(int(evt.row_value[0]))
        return present(ctx, new, opacity, k, same)

    def on_opacity(view, opacity):
        return views.overlay_file(ctx, views.draw(ctx, view, opacity))

    def on_similar_settings(view, k, same):
        return similar_panel.show(ctx, view, k, same)

    def on_similar_pick(hits, opacity, k, same, evt: gr.SelectData):
        new = open_hit(ctx, hits, evt.index)
        return (new.image_id, *present(ctx, new, opacity, k, same))

    with_id = [tab.image_id, *tab.outputs]
    gr.on(
        [tab.open_button.click, tab.image_id.submit],
        on_open,
        [tab.image_id, *inputs],
        tab.outputs,
        **light,
        **quiet,
    )
    tab.random_button.click(on_random, inputs, with_id, **light, **quiet)
    tab.upload_button.upload(on_upload, [tab.upload_button, *inputs], tab.outputs, **heavy, **quiet)
    tab.overlay.select(on_click, inputs, tab.outputs, **light, **quiet)
    tab.segments.select(on_row, inputs, tab.outputs, **light, **quiet)
    tab.opacity.release(on_opacity, [tab.view, tab.opacity], tab.overlay, **light, **quiet)
    sim = tab.similar
    gr.on(
        [sim.k.release, sim.same_prototype.change],
        on_similar_settings,
        [tab.view, sim.k, sim.same_prototype],
        sim.outputs,
        **light,
        **quiet,
    )
    sim.gallery.select(
        on_similar_pick,
        [sim.hits, tab.opacity, sim.k, sim.same_prototype],
        with_id,
        **light,
        **quiet,
    )
