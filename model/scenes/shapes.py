"""Signed distance functions of the built-in scenes' object shapes.

Every shape lives in unit coordinates: it fits inside the unit disc centred on the origin, x points
right and y points down (image convention). A function takes two float arrays of the same shape
(x, y) and returns the signed distance to the outline in the same units: negative inside, positive
outside, exact or close to exact near the outline (that is where anti-aliasing and the label mask
read it). Scaling by a radius r in pixels: ``sdf(x / r, y / r) * r`` is a distance in pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SDF = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _box(x: np.ndarray, y: np.ndarray, hx: float, hy: float) -> np.ndarray:
    """Axis-aligned box with half extents (hx, hy)."""
    dx = np.abs(x) - hx
    dy = np.abs(y) - hy
    outside = np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0))
    return outside + np.minimum(np.maximum(dx, dy), 0.0)


def _polygon(x: np.ndarray, y: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Simple polygon given by its vertices (n, 2) in order (exact distance, even-odd inside)."""
    d2 = (x - verts[0, 0]) ** 2 + (y - verts[0, 1]) ** 2
    inside = np.zeros(x.shape, dtype=bool)
    for i in range(len(verts)):
        vix, viy = verts[i]
        vjx, vjy = verts[i - 1]
        ex, ey = vjx - vix, vjy - viy
        wx, wy = x - vix, y - viy
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d2 = np.minimum(d2, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        c1 = y >= viy
        c2 = y < vjy
        c3 = ex * wy > ey * wx
        inside ^= (c1 & c2 & c3) | (~c1 & ~c2 & ~c3)
    return np.where(inside, -1.0, 1.0) * np.sqrt(d2)


def _regular(n: int, radius: float, phase: float = -np.pi / 2) -> np.ndarray:
    """Vertices (n, 2) of a regular n-gon; the first vertex points up by default."""
    a = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def _star_vertices(points: int, outer: float, inner: float) -> np.ndarray:
    a = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


_TRIANGLE = _regular(3, 0.95)
_HEXAGON = _regular(6, 0.95, phase=0.0)
_STAR = _star_vertices(5, 1.0, 0.45)
_DIAMOND = np.array([[0.0, -1.0], [0.62, 0.0], [0.0, 1.0], [-0.62, 0.0]])
_L_BLOCK = 0.95 * np.array(
    [[-0.62, -0.78], [-0.05, -0.78], [-0.05, 0.22], [0.7, 0.22], [0.7, 0.78], [-0.62, 0.78]]
)


def disc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.hypot(x, y) - 0.88


def square(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _box(x, y, 0.68, 0.68)


def triangle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _polygon(x, y - 0.08, _TRIANGLE)  # centroid moved towards the bbox centre


def star(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _polygon(x, y, _STAR)


def cross(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.minimum(_box(x, y, 0.92, 0.3), _box(x, y, 0.3, 0.92))


def ring(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(np.hypot(x, y) - 0.68) - 0.3


def hexagon(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _polygon(x, y, _HEXAGON)


def heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inigo Quilez's exact heart, pointing down, rescaled into the unit disc."""
    s = 0.68
    px = np.abs(x) * s
    py = 0.55 - y * s
    lobe = np.hypot(px - 0.25, py - 0.75) - np.sqrt(2.0) / 4.0
    m = 0.5 * np.maximum(px + py, 0.0)
    low = np.sqrt(np.minimum(px**2 + (py - 1.0) ** 2, (px - m) ** 2 + (py - m) ** 2))
    low = low * np.sign(px - py)
    return np.where(px + py > 1.0, lobe, low) / s


def crescent(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(np.hypot(x, y) - 0.95, 0.8 - np.hypot(x - 0.5, y))


def diamond(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _polygon(x, y, _DIAMOND)


def ellipse(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Quilez's first-order ellipse distance (accurate near the outline), semi-axes 0.98 x 0.6."""
    a, b = 0.98, 0.6
    k0 = np.hypot(x / a, y / b)
    k1 = np.maximum(np.hypot(x / a**2, y / b**2), 1e-6)
    return k0 * (k0 - 1.0) / k1


def l_block(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _polygon(x, y, _L_BLOCK)


SHAPES: dict[str, SDF] = {
    "disc": disc,
    "square": square,
    "triangle": triangle,
    "star": star,
    "cross": cross,
    "ring": ring,
    "hexagon": hexagon,
    "heart": heart,
    "crescent": crescent,
    "diamond": diamond,
    "ellipse": ellipse,
    "l_block": l_block,
}


def _unit_areas(n: int = 256) -> dict[str, float]:
    """Area of each shape in unit coordinates (the unit disc has area pi), by counting on a grid."""
    c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    y, x = np.meshgrid(c, c, indexing="ij")
    return {name: float((sdf(x, y) < 0).mean() * 4.0) for name, sdf in SHAPES.items()}


UNIT_AREA: dict[str, float] = _unit_areas()
