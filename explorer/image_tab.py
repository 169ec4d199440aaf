"""Image tab: a collection image or an upload, its grouping overlay, legend and segments; clicking
a segment selects it and fills the similar-segments panel below. Layout and wiring only: what
the events do is in explorer.image_actions."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from explorer import image_actions, similar_panel
from explorer import view as views
from explorer.context import AppContext
from explorer.similar_panel import SimilarPanel
from explorer.uploads import UploadRejected


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
    """Lay out the tab (the picker row, the overlay beside its legend and segments, the similar
    segments below) and wire it."""
    start = image_actions.initial_view(ctx)
    shown = image_actions.present(ctx, start, 0.5, ctx.config.default_k, False)
    image_id, open_button, random_button, upload_button, opacity = _picker_row(ctx, start)
    status = gr.Markdown(shown.status, latex_delimiters=[], elem_id="image-status")
    overlay, legend, table, concept_button = _overlay_and_segments(shown)
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
    _wire_image(ctx, tab)
    _wire_similar(ctx, tab)
    return tab


def _picker_row(ctx: AppContext, start) -> tuple:
    """Image id, Open, Random image, Upload, and the overlay's opacity."""
    first, last = ctx.index.image_id_range()
    with gr.Row(equal_height=False, elem_classes="bottom-aligned"):
        image_id = gr.Number(
            value=start.image_id,
            precision=0,
            label=f"Collection image id ({first} to {last})",
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
    return image_id, open_button, random_button, upload_button, opacity


def _overlay_and_segments(shown: image_actions.ImageShown) -> tuple:
    """The grouping overlay on the left; its legend, segment table and a link to the prototype
    in Concepts on the right."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            overlay = gr.Image(
                shown.overlay,
                format="png",
                interactive=False,
                show_label=False,
                height=520,
                buttons=["download", "fullscreen"],
                elem_id="overlay",
            )
        with gr.Column(scale=2, min_width=300):
            legend = gr.HTML(shown.legend, label="Legend", elem_id="legend")
            table = gr.Dataframe(
                shown.segments,
                interactive=False,
                max_height=300,
                label="Segments (click a row to select)",
                elem_id="segments",
            )
            concept_button = gr.Button("Show this prototype in Concepts", size="sm")
    return overlay, legend, table, concept_button


def _wire_image(ctx: AppContext, tab: ImageTab) -> None:
    """Open, random, upload, a click on the overlay or a segment row, the opacity."""
    heavy = {"concurrency_id": "model", "concurrency_limit": ctx.config.model_concurrency}
    light = {"concurrency_id": "render", "concurrency_limit": ctx.config.search_concurrency}
    quiet = {"api_visibility": "undocumented"}
    inputs = [tab.view, *tab.settings]

    def on_open(image_id, view, opacity, k, same):
        return image_actions.present(ctx, image_actions.open_image(ctx, image_id), opacity, k, same)

    def on_random(view, opacity, k, same):
        new = views.open_collection(ctx, views.random_image_id(ctx))
        return (new.image_id, *image_actions.present(ctx, new, opacity, k, same))

    def on_upload(path, view, opacity, k, same, progress=gr.Progress()):  # noqa: B008 (gradio idiom)
        try:
            new = image_actions.upload(ctx, path, progress)
        except UploadRejected as error:
            gr.Warning(str(error))
            message = f"⚠️ **Upload refused:** {error}  \nStill showing {views.status(ctx, view)}"
            return {tab.status: message}  # every other output stays as it is
        progress(0.8, desc="finding similar segments")
        return image_actions.present(ctx, new, opacity, k, same)

    def on_click(view, opacity, k, same, evt: gr.SelectData):
        x, y = evt.index
        new = view.with_selection(views.prototype_at(ctx, view, x, y))
        return image_actions.present(ctx, new, opacity, k, same)

    def on_row(view, opacity, k, same, evt: gr.SelectData):
        new = view.with_selection(int(evt.row_value[0]))
        return image_actions.present(ctx, new, opacity, k, same)

    def on_opacity(view, opacity):
        return views.overlay_file(ctx, views.draw(ctx, view, opacity))

    gr.on(
        [tab.open_button.click, tab.image_id.submit],
        on_open,
        [tab.image_id, *inputs],
        tab.outputs,
        **light,
        **quiet,
    )
    with_id = [tab.image_id, *tab.outputs]
    tab.random_button.click(on_random, inputs, with_id, **light, **quiet)
    tab.upload_button.upload(on_upload, [tab.upload_button, *inputs], tab.outputs, **heavy, **quiet)
    tab.overlay.select(on_click, inputs, tab.outputs, **light, **quiet)
    tab.segments.select(on_row, inputs, tab.outputs, **light, **quiet)
    tab.opacity.release(on_opacity, [tab.view, tab.opacity], tab.overlay, **light, **quiet)


def _wire_similar(ctx: AppContext, tab: ImageTab) -> None:
    """The similar-segments panel: its settings, and a click on a hit opens the hit's image."""
    light = {"concurrency_id": "render", "concurrency_limit": ctx.config.search_concurrency}
    quiet = {"api_visibility": "undocumented"}

    def on_similar_settings(view, k, same):
        return image_actions.show_similar(ctx, view, k, same)

    def on_similar_pick(hits, opacity, k, same, evt: gr.SelectData):
        new = image_actions.open_hit(ctx, hits, evt.index)
        return (new.image_id, *image_actions.present(ctx, new, opacity, k, same))

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
        [tab.image_id, *tab.outputs],
        **light,
        **quiet,
    )
