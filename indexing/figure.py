"""The paper's Figure-3 view as a PNG (python -m indexing figure, indexing.figure_cli): one row
per prototype, its top-k segments by score, the prototype's mask drawn in red at alpha 0.6 over
each image (as in the authors' visualisation), row labels with prototype id, user name and
dominant class.

Layout (pixels): a label column of LABEL_WIDTH, then k cells of `cell` x `cell` separated and
surrounded by PAD; each image is fitted into its cell with its aspect ratio kept.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from indexing.query.concept_index import ConceptIndex
from model.data import UnreadableImage, load_rgb

CELL = 128  # default side of one thumbnail cell
PAD = 4  # gap between cells and around the grid
LABEL_WIDTH = 180  # width of the row-label column
BACKGROUND = (24, 24, 24)
EMPTY_CELL = (48, 48, 48)
TEXT = (235, 235, 235)
MASK_RED = (255, 0, 0)  # the paper's Figure 3: the prototype's mask in red ...
MASK_ALPHA = 0.6  # ... at alpha 0.6 over the image


def figure_size(rows: int, k: int, cell: int = CELL) -> tuple[int, int]:
    """(W, H) in pixels of a grid of `rows` prototypes and k segments each."""
    return LABEL_WIDTH + k * (cell + PAD) + PAD, rows * (cell + PAD) + PAD


def mask_overlay(
    image: np.ndarray, mask: np.ndarray, colour=MASK_RED, alpha: float = MASK_ALPHA
) -> np.ndarray:
    """The paper's Figure 3 style, for this figure and the app's thumbnails alike: pixels in
    `mask` become (1 - alpha) * image + alpha * colour, the others are unchanged.
    image (H, W, 3) uint8, mask (H, W) bool -> (H, W, 3) uint8."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ")
    out = image.copy()
    blend = (1.0 - alpha) * image[mask].astype(np.float32) + alpha * np.asarray(colour, np.float32)
    out[mask] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def sample_prototypes(index: ConceptIndex, n: int, seed: int = 0) -> list[int]:
    """n prototypes drawn (seeded) among those present in the collection, in id order."""
    table = index.prototypes()
    present = table.loc[table["slots"] > 0, "prototype"].to_numpy()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(present, size=min(n, len(present)), replace=False)
    return sorted(int(p) for p in chosen)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _cell(index: ConceptIndex, image_id: int, prototype: int, cell: int) -> Image.Image:
    """The image of a segment with the prototype's mask in red, fitted into cell x cell."""
    canvas = Image.new("RGB", (cell, cell), EMPTY_CELL)
    try:
        record = index.image(image_id)
        pixels = np.asarray(load_rgb(record.path))
        picture = Image.fromarray(mask_overlay(pixels, record.assignment == prototype))
    except (UnreadableImage, OSError, ValueError):
        ImageDraw.Draw(canvas).text((6, cell // 2 - 6), "image missing", fill=TEXT, font=_font(11))
        return canvas
    scale = cell / max(picture.size)  # fit the cell, enlarging small images too
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.Resampling.BILINEAR)
    canvas.paste(picture, ((cell - picture.width) // 2, (cell - picture.height) // 2))
    return canvas


def _row_label(row: dict) -> list[str]:
    lines = [f"prototype {row['prototype']}"]
    if row["label"]:
        lines.append(f'"{row["label"]}"')
    if row["dominant_class"]:
        lines.append(f"{row['dominant_class']} ({100 * row['purity']:.0f}% pure)")
    lines.append(f"{row['images']} images")
    return lines


def prototype_figure(
    index: ConceptIndex, prototypes: list[int], k: int = 5, cell: int = CELL
) -> Image.Image:
    """The grid for the given prototypes (rows, in the order given), k top segments each."""
    table = index.prototypes().set_index("prototype", drop=False)
    width, height = figure_size(len(prototypes), k, cell)
    figure = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    font = _font(13)
    for r, prototype in enumerate(prototypes):
        top = PAD + r * (cell + PAD)
        if prototype not in table.index:
            raise KeyError(f"unknown prototype {prototype}: the index has 0..{len(table) - 1}")
        row = table.loc[prototype].to_dict()
        for i, line in enumerate(_row_label(row)):
            draw.text((PAD + 2, top + 4 + 17 * i), line, fill=TEXT, font=font)
        segments = index.top_segments(prototype, k)
        for c in range(k):
            left = LABEL_WIDTH + PAD + c * (cell + PAD)
            if c < len(segments):
                picture = _cell(index, int(segments["image_id"].iloc[c]), prototype, cell)
            else:
                picture = Image.new("RGB", (cell, cell), EMPTY_CELL)
            figure.paste(picture, (left, top))
    return figure
