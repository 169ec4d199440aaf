"""Drawing the built-in scenes: scene-centric images with exact ground truth.

Each of the 12 thing classes is a shape with its own two-tone texture; each of the 5 stuff classes
is a surface texture filling a horizontal band with a wavy border. An image holds 1-3 stuff bands
and objects of varied scale, rotation and position, later objects occluding earlier ones, each with
a darker rim and a soft shadow. Two styles (STYLES):

- ``natural`` (the default, as photographs are): each class has a characteristic palette shared
  with exactly one other class (model.scenes.palettes), 15 % of instances in random colours;
  1-4 objects spanning 26-88 % of the side: objects cover about a third of the pixels (31-33 %
  measured over 4 x 200 scenes).
- ``hard`` (the generator's first version, unchanged): random colours for every instance, so
  colour never identifies a class; 1-6 objects spanning 8-45 % of the side (about 14 % of the
  pixels).

Image ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``: deterministic, and
independent of how many worker processes write it (model.scenes.dataset).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from model.scenes import palettes
from model.scenes import textures as tex
from model.scenes.shapes import SHAPES, UNIT_AREA

# Bump when the pictures change, so that cached data sets are rebuilt. 1: the hard style alone;
# 2: the natural style added (the hard style draws exactly what version 1 drew).
GENERATOR_VERSION = 2


class SceneStyle(NamedTuple):
    """What a style changes: how many objects, how large, in which colours."""

    objects: tuple[int, int]  # objects attempted per scene, inclusive range
    radius: tuple[float, float]  # object radius as a fraction of half the side (uniform)
    colours: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]  # (rng, class)


STYLES: dict[str, SceneStyle] = {
    "natural": SceneStyle((1, 4), (0.29, 0.98), palettes.natural_colours),
    "hard": SceneStyle((1, 6), (0.09, 0.5), palettes.hard_colours),
}
DEFAULT_STYLE = "natural"

# (class name, shape, pattern): the shape and the texture together identify a thing class.
_THINGS: list[tuple[str, str, tex.Pattern]] = [
    ("dotted disc", "disc", tex.dots),
    ("striped square", "square", tex.stripes),
    ("checkered triangle", "triangle", tex.checker),
    ("ringed star", "star", tex.rings),
    ("zigzag cross", "cross", tex.zigzag),
    ("speckled ring", "ring", tex.speckle),
    ("sunburst hexagon", "hexagon", tex.sunburst),
    ("wavy heart", "heart", tex.waves),
    ("cell crescent", "crescent", tex.cells),
    ("camo diamond", "diamond", tex.camo),
    ("grid ellipse", "ellipse", tex.grid),
    ("scaly L-block", "l_block", tex.scales),
]
# (class name, COCO-stuff supercategory, surface)
_STUFF: list[tuple[str, str, tex.Surface]] = [
    ("sky", "sky", tex.sky),
    ("grass", "plant", tex.grass),
    ("brick wall", "wall", tex.brick),
    ("water", "water", tex.water),
    ("sand", "ground", tex.sand),
]
THING_CLASSES: list[str] = [name for name, _, _ in _THINGS]
STUFF_CLASSES: list[str] = [name for name, _, _ in _STUFF]
CATEGORIES: list[dict] = [
    {"id": i + 1, "name": name, "supercategory": "shape", "isthing": 1}
    for i, name in enumerate(THING_CLASSES)
] + [
    {"id": len(THING_CLASSES) + i + 1, "name": name, "supercategory": sup, "isthing": 0}
    for i, (name, sup, _) in enumerate(_STUFF)
]
DESIGN_SIZE = 192  # textures are designed in the pixels of a 192 px scene and scale with the size
MIN_SIZE = 32


def _stuff(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, k: float):
    """1-3 stuff bands, top to bottom (sky, when drawn, on top): image, region map, category ids."""
    size = xs.shape[0]
    count = int(rng.integers(1, 4))
    order = [int(c) for c in rng.permutation(len(_STUFF))[:count]]
    if 0 in order:
        order.remove(0)
        order.insert(0, 0)
    u, v = xs / k, ys / k  # design px
    img = _STUFF[order[0]][2](u, v, k, rng)
    region = np.zeros((size, size), dtype=np.int32)
    bases = np.sort(rng.uniform(0.25, 0.85, count - 1))
    bases[1:] = np.maximum(bases[1:], bases[:-1] + 0.2)
    x = xs[0]
    previous = np.full_like(x, -np.inf)
    for i, base in enumerate(bases):
        border = base * size
        for amp, cycles in ((0.05, rng.uniform(0.5, 2.0)), (0.015, rng.uniform(3.0, 7.0))):
            border = border + amp * size * np.sin(2 * np.pi * (cycles * x / size + rng.random()))
        border = np.maximum(border, previous + 2.0)
        previous = border
        slope = np.gradient(border)
        dist = (ys - border[None, :]) / np.sqrt(1.0 + slope**2)[None, :]  # (H, W) px below border
        layer = _STUFF[order[i + 1]][2](u, v, k, rng)
        alpha = np.clip(0.5 + dist, 0.0, 1.0)[..., None]
        img = img * (1 - alpha) + layer * alpha
        region[dist > 0] = i + 1
    cats = [len(_THINGS) + 1 + c for c in order]
    return img, region, cats


class _Placement(NamedTuple):
    """An object placed in the scene, in the pixels of its bounding square (y0:y1, x0:x1)."""

    cls: int  # thing class, 0-based (category id - 1)
    r: float  # radius in px: the shape spans about 90 % of 2r
    cos: float  # cos and sin of the rotation
    sin: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the square, ends exclusive
    dx: np.ndarray  # (h, w) pixel centres minus the object's centre, px
    dy: np.ndarray
    sd: np.ndarray  # (h, w) signed distance to the outline, px (negative inside)
    mask: np.ndarray  # (h, w) bool: inside the shape


def _place(
    rng: np.random.Generator,
    xs: np.ndarray,
    ys: np.ndarray,
    inst: np.ndarray,
    count: int,
    full: dict[int, int],
    k: float,
    style: SceneStyle,
) -> _Placement | None:
    """Up to 12 draws of a class, size, position and rotation over the (H, W) instance map of
    `count` instances so far; the first draw that lies mostly in the frame and leaves every
    earlier object (`full`: instance -> its area when placed) at least 40 % visible, else None."""
    size = xs.shape[0]
    reach_extra = 2.5 * k + 2.5 * k + 1  # the shadow's offset and softness, and a pixel
    min_area = 0.001 * size * size
    for attempt in range(12):
        cls = int(rng.integers(len(_THINGS)))
        shape = _THINGS[cls][1]
        r = rng.uniform(*style.radius) * size / 2  # shapes span about 90 % of 2r
        cx, cy = rng.uniform(0.04, 0.96, 2) * size
        if attempt == 11 and not full:
            cx = cy = size / 2  # the first object always finds a place
        theta = rng.uniform(0, 2 * np.pi)
        reach = r * 1.05 + reach_extra
        x0, y0 = max(0, int(cx - reach)), max(0, int(cy - reach))
        x1, y1 = min(size, int(cx + reach) + 1), min(size, int(cy + reach) + 1)
        dx, dy = xs[y0:y1, x0:x1] - cx, ys[y0:y1, x0:x1] - cy
        c, s = np.cos(theta), np.sin(theta)
        sd = SHAPES[shape]((c * dx + s * dy) / r, (c * dy - s * dx) / r) * r  # px
        mask = sd < 0
        if int(mask.sum()) < max(min_area, 0.55 * UNIT_AREA[shape] * r * r):
            continue  # mostly outside the frame, or tiny
        under = np.bincount(inst[y0:y1, x0:x1][mask], minlength=count)
        visible = np.bincount(inst.ravel(), minlength=count)
        if any(visible[j] - under[j] < max(0.4 * a, min_area) for j, a in full.items()):
            continue  # would hide too much of an earlier object
        return _Placement(cls, r, c, s, (x0, y0, x1, y1), dx, dy, sd, mask)
    return None


def _paint(
    rng: np.random.Generator, img: np.ndarray, obj: _Placement, k: float, style: SceneStyle
) -> None:
    """Draw the object into the (H, W, 3) float image: its class's two-tone pattern in the
    style's colours, lit from the top left, a darker rim and a soft shadow."""
    shape, pattern = _THINGS[obj.cls][1:]
    c, s, r, dx, dy, sd = obj.cos, obj.sin, obj.r, obj.dx, obj.dy, obj.sd
    shadow_off, soft = 2.5 * k, 2.5 * k
    jitter = rng.uniform(0.9, 1.12)
    m = pattern((c * dx + s * dy) / (k * jitter), (c * dy - s * dx) / (k * jitter), k, rng)
    col_a, col_b = style.colours(rng, obj.cls)
    rgb = col_a + (col_b - col_a) * m[..., None]
    light = 1.0 + 0.12 * np.clip(-(dx + dy) / (1.4 * r), -1, 1)  # lit from the top left
    rim = 0.7 + 0.3 * np.clip(-sd / (1.6 * k), 0.0, 1.0)  # darker outline
    rgb = rgb * (light * rim)[..., None]
    ssd = SHAPES[shape](
        (c * (dx - shadow_off) + s * (dy - shadow_off)) / r,
        (c * (dy - shadow_off) - s * (dx - shadow_off)) / r,
    )
    shadow = 0.35 * np.clip((soft - ssd * r) / (2 * soft), 0.0, 1.0)
    alpha = np.clip(0.5 - sd, 0.0, 1.0)[..., None]
    x0, y0, x1, y1 = obj.box
    patch = img[y0:y1, x0:x1] * (1 - shadow)[..., None]
    img[y0:y1, x0:x1] = patch * (1 - alpha) + rgb * alpha


def render_instances(
    rng: np.random.Generator, size: int, style: str = DEFAULT_STYLE
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Draw one scene of the given style (a key of STYLES).

    Returns the image (size x size x 3 uint8 RGB), the instance map (size x size int32, values
    0..n-1: stuff bands first, then objects in drawing order; every pixel belongs to exactly one
    instance, which may be absent where it is fully hidden) and the category id of each instance.
    """
    look = STYLES[style]
    k = size / DESIGN_SIZE
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres, (H, W)
    img, inst, cats = _stuff(rng, xs, ys, k)
    img = img.astype(np.float32)
    full: dict[int, int] = {}  # object instance -> its in-frame area when placed
    low, high = look.objects
    for _ in range(int(rng.integers(low, high + 1))):
        obj = _place(rng, xs, ys, inst, len(cats), full, k, look)
        if obj is None:
            continue
        _paint(rng, img, obj, k, look)
        x0, y0, x1, y1 = obj.box
        inst[y0:y1, x0:x1][obj.mask] = len(cats)
        full[len(cats)] = int(obj.mask.sum())
        cats.append(obj.cls + 1)
    image = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return image, inst, cats


def render_scene(
    rng: np.random.Generator, size: int, style: str = DEFAULT_STYLE
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: RGB image (size x size x 3 uint8) and label map (size x size uint8, category id
    of every pixel: 1..12 things, 13..17 stuff, see CATEGORIES)."""
    image, inst, cats = render_instances(rng, size, style)
    return image, np.asarray(cats, dtype=np.uint8)[inst]
