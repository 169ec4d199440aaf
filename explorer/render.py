"""Drawing: prototype palette, grouping overlays with boundaries, masked segment thumbnails, legend.

All images are HWC uint8 RGB numpy arrays; masks are (H, W) bool; assignment maps are (H, W)
integer prototype indices; boxes are [x, y, w, h] in image pixels (COCO order) unless a name
says XYXY. Nothing here knows about Gradio or the index.
"""

from __future__ import annotations

import colorsys
import html
import string
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from indexing.figure import mask_overlay

# 20 well separated colours first (Kelly's list, minus white/black), then golden-angle hues.
_BASE_COLOURS = [
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
    "#9a6324",
    "#fffac8",
    "#800000",
    "#aaffc3",
    "#808000",
    "#ffd8b1",
    "#000075",
    "#808080",
]
HIGHLIGHT = (255, 221, 0)  # outline of the selected segment
DIM = 0.5  # brightness kept outside the selected segment
DISPLAY_SIDE = 600  # small images are enlarged (integer factor) to about this many pixels


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def rgb_to_hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def palette(num_prototypes: int) -> np.ndarray:
    """(K, 3) uint8: a fixed colour per prototype, the same in every view and every session."""
    colours = [hex_to_rgb(c) for c in _BASE_COLOURS[:num_prototypes]]
    for i in range(len(colours), num_prototypes):
        hue = (i * 0.618033988749895) % 1.0
        saturation = (0.55, 0.85, 0.7)[i % 3]
        value = (0.95, 0.75, 0.6)[(i // 3) % 3]
        colours.append(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value)))
    return np.array(colours, dtype=np.uint8).reshape(num_prototypes, 3)


def boundaries(assignment: np.ndarray, thickness: int = 1) -> np.ndarray:
    """(H, W) bool: pixels where the prototype changes to the right or below, grown to
    `thickness` pixels."""
    edges = np.zeros(assignment.shape, dtype=bool)
    edges[:, 1:] |= assignment[:, 1:] != assignment[:, :-1]
    edges[1:, :] |= assignment[1:, :] != assignment[:-1, :]
    return dilate(edges, thickness - 1)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of a (H, W) bool mask by `radius` pixels (0: unchanged)."""
    out = mask.copy()
    for _ in range(max(0, radius)):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def line_width(height: int, width: int) -> int:
    """Boundary thickness that stays visible when a large image is shown small."""
    return max(1, round(max(height, width) / 400))


def grouping_overlay(
    image: np.ndarray,
    assignment: np.ndarray,
    colours: np.ndarray,
    opacity: float = 0.5,
    draw_boundaries: bool = True,
    highlight: int | None = None,
) -> np.ndarray:
    """image (H, W, 3) uint8 + assignment (H, W) -> (H, W, 3) uint8 overlay.

    Each pixel is blended with its prototype's colour: (1 - opacity) * image + opacity * colour
    (opacity in [0, 1]); boundaries between segments are drawn in white. With `highlight`
    (a prototype), everything outside that prototype's segment is dimmed and the segment is
    outlined in yellow.
    """
    if image.shape[:2] != assignment.shape:
        raise ValueError(f"image {image.shape[:2]} and assignment {assignment.shape} differ")
    opacity = float(np.clip(opacity, 0.0, 1.0))
    tint = colours[np.clip(assignment, 0, len(colours) - 1)].astype(np.float32)  # (H, W, 3)
    out = (1.0 - opacity) * image.astype(np.float32) + opacity * tint
    thickness = line_width(*assignment.shape)
    # whole-array operations, not boolean indexing (which gathers and scatters): half the time
    if draw_boundaries:
        edges = boundaries(assignment, thickness)[..., None]
        np.putmask(out, np.broadcast_to(edges, out.shape), 255.0)
    if highlight is not None:
        selected = assignment == highlight
        out *= np.where(selected, np.float32(1.0), np.float32(DIM))[..., None]
        out[dilate(selected, thickness + 1) & ~selected] = HIGHLIGHT  # a band just outside
    np.rint(out, out=out)
    return np.clip(out, 0, 255).astype(np.uint8)


def display_scale(height: int, width: int, side: int = DISPLAY_SIDE) -> int:
    """Integer factor that enlarges a small image to about `side` pixels (1 for large ones)."""
    return max(1, side // max(height, width, 1))


def enlarge(array: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an (H, W, ...) array by an integer factor."""
    if factor == 1:
        return array
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def context_box(
    bbox: Sequence[float], size: tuple[int, int], margin: float = 0.25, min_side: int = 32
) -> tuple[int, int, int, int]:
    """bbox [x, y, w, h] and image size (W, H) -> crop box XYXY (ints, x1/y1 exclusive).

    The box grows by `margin` times its width/height on every side, to at least `min_side`
    pixels per side (tiny segments keep some context), and is shifted, then clipped, to lie
    inside the image.
    """
    W, H = size
    x, y, w, h = (float(v) for v in bbox)
    cx, cy = x + w / 2, y + h / 2
    cw = min(W, max(w * (1 + 2 * margin), min_side))
    ch = min(H, max(h * (1 + 2 * margin), min_side))
    x0 = min(max(0.0, cx - cw / 2), W - cw)
    y0 = min(max(0.0, cy - ch / 2), H - ch)
    x0, y0 = int(np.floor(x0)), int(np.floor(y0))
    x1, y1 = min(W, int(np.ceil(x0 + cw))), min(H, int(np.ceil(y0 + ch)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def mask_bbox(mask: np.ndarray) -> list[int]:
    """(H, W) bool -> [x, y, w, h] of its True pixels ([0, 0, 0, 0] when empty)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def segment_thumbnail(
    image: np.ndarray,
    mask: np.ndarray,
    bbox: Sequence[float] | None = None,
    margin: float = 0.25,
    side: int = 224,
) -> Image.Image:
    """A segment as in Figure 3: its mask in red (alpha 0.6) over the image, cropped around its
    bbox with `margin` context, scaled so that the longer side is `side` pixels."""
    box = context_box(bbox if bbox is not None else mask_bbox(mask), image.shape[1::-1], margin)
    x0, y0, x1, y1 = box
    crop = Image.fromarray(mask_overlay(image[y0:y1, x0:x1], mask[y0:y1, x0:x1]))
    scale = side / max(crop.size)
    target = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    return crop.resize(target, resample)


class LegendEntry(NamedTuple):
    prototype: int
    name: str  # the user's label or ""
    colour: tuple[int, int, int]
    area: float  # fraction of the image in [0, 1]


def prototype_title(prototype: int, name: str = "") -> str:
    """'p3 · sky' or 'p3': how a prototype is written everywhere in the app."""
    return f"p{prototype} · {name}" if name else f"p{prototype}"


# every ASCII punctuation character as a numeric character reference: Markdown and HTML read a
# reference as that character, never as syntax (no link, image, tag, emphasis, heading)
_LITERAL = str.maketrans({c: f"&#{ord(c)};" for c in string.punctuation})


def markdown_text(text: str) -> str:
    """User text (a prototype name, a file name) to interpolate into Markdown, shown literally
    on one line. LaTeX delimiters survive as text: turn LaTeX off on components showing it."""
    return " ".join(str(text).split()).translate(_LITERAL)


def legend_html(entries: Sequence[LegendEntry], selected: int | None = None) -> str:
    """Colour swatch + prototype + name + area for each segment, largest first; the selected
    prototype in bold. Names are escaped (they are user input)."""
    if not entries:
        return "<div class='slotcon-legend'><em>No segments.</em></div>"
    items = []
    for entry in sorted(entries, key=lambda e: -e.area):
        weight = " class='selected'" if entry.prototype == selected else ""
        items.append(
            f"<li{weight}><span class='swatch' style='background:{rgb_to_hex(entry.colour)}'>"
            f"</span>{html.escape(prototype_title(entry.prototype, entry.name))}"
            f"<span class='area'>{100 * entry.area:.1f}%</span></li>"
        )
    return "<ul class='slotcon-legend'>" + "".join(items) + "</ul>"


LEGEND_CSS = """
.slotcon-legend { list-style: none; padding: 0; margin: 0; columns: 2; font-size: 0.9em; }
.slotcon-legend li { display: flex; align-items: center; gap: 6px; padding: 2px 0;
  break-inside: avoid; }
.slotcon-legend li.selected { font-weight: 700; }
.slotcon-legend .swatch { width: 14px; height: 14px; border-radius: 3px; flex: none;
  border: 1px solid rgba(0,0,0,.35); }
.slotcon-legend .area { margin-left: auto; padding-right: 12px; opacity: .7; }
"""
