"""Textures and colours of the built-in scenes: two-tone object patterns and stuff surfaces.

Coordinates are in *design pixels*: the pixels of a 192 x 192 scene, so that a scene looks the same
at any resolution (``k`` = real pixels per design pixel = size / 192, used for anti-aliasing).

- An object pattern ``pattern(u, v, k, rng) -> m`` takes the object-centred, object-rotated
  coordinates (float arrays, any shape) and returns the mix factor m (float, 0..1) between the
  instance's two colours. Patterns differ in type and in spatial frequency (periods 2-15 design px).
- A stuff surface ``surface(x, y, k, rng) -> rgb`` takes the image coordinates (H x W float arrays)
  and returns an H x W x 3 float image in 0..1, its colours drawn within a plausible range.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np

Pattern = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]
Surface = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]
TAU = 2.0 * np.pi


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """One colour, (3,) float32 RGB in 0..1, from hue (wraps), saturation and value in 0..1."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def value_noise(table: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth value noise in 0..1 at (x, y) in lattice cells; the (n, n) random table wraps."""
    n = table.shape[0]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    i0, j0 = x0.astype(np.int64) % n, y0.astype(np.int64) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    a, b, c, d = table[j0, i0], table[j0, i1], table[j1, i0], table[j1, i1]
    return a + (b - a) * fx + (c - a) * fy + (a - b - c + d) * fx * fy


def _noise(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, cell: float) -> np.ndarray:
    """Value noise of the given cell size (design px) with a fresh table and a random offset."""
    table = rng.random((64, 64), dtype=np.float32)
    ox, oy = rng.uniform(0, 64, 2)
    return value_noise(table, x / cell + ox, y / cell + oy)


def _tri(x: np.ndarray) -> np.ndarray:
    """Distance to the nearest integer, 0..0.5."""
    return np.abs(x - np.round(x))


def _aa(d: np.ndarray, k: float) -> np.ndarray:
    """Anti-aliased step: 1 where the signed distance d (design px) is positive, else 0."""
    return np.clip(0.5 + d * k, 0.0, 1.0)


# ---- object patterns (one per thing class) ------------------------------------------------------


def dots(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    p, r = 14.0, 3.4  # staggered lattice: neighbours 9.9 px apart
    a, b = (u + rng.uniform(0, p)) / p, (v + rng.uniform(0, p)) / p
    d = np.minimum(np.hypot(_tri(a), _tri(b)), np.hypot(_tri(a + 0.5), _tri(b + 0.5))) * p
    return _aa(r - d, k)


def stripes(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    p = 11.0
    return _aa((0.25 - _tri((u + rng.uniform(0, p)) / p)) * p, k)


def checker(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    c = 8.0
    a, b = (u + rng.uniform(0, 2 * c)) / c, (v + rng.uniform(0, 2 * c)) / c
    sign = np.where((np.floor(a) + np.floor(b)) % 2 == 0, 1.0, -1.0)
    return _aa(sign * np.minimum(_tri(a), _tri(b)) * c, k)


def rings(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    p = 9.0  # concentric about the object's centre
    return _aa((0.25 - _tri(np.hypot(u, v) / p)) * p, k)


def zigzag(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    p, wl, amp = 9.0, 12.0, 4.0
    w = v + amp * (4.0 * _tri((u + rng.uniform(0, wl)) / wl) - 1.0)
    slope = np.hypot(1.0, 4.0 * amp / wl)
    return _aa((0.25 - _tri((w + rng.uniform(0, p)) / p)) * p / slope, k)


def speckle(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    n = _noise(rng, u, v, 2.2)
    return np.clip((n - 0.5) * 6.0 + 0.5, 0.0, 1.0)


def sunburst(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    n = 12  # sectors about the object's centre
    a = np.arctan2(v, u) / TAU * n + rng.uniform(0, 1)
    return _aa((0.25 - _tri(a)) * (TAU / n) * np.hypot(u, v), k)


def waves(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    p, wl, amp = 13.0, 26.0, 3.5
    w = v + amp * np.sin(TAU * (u + rng.uniform(0, wl)) / wl)
    return _aa((0.18 - _tri((w + rng.uniform(0, p)) / p)) * p / 1.25, k)


def cells(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    """Voronoi cells with thick outlines (giraffe-like), cells about 12 px across."""
    c, n = 12.0, 32
    jitter = rng.uniform(0.15, 0.85, (n, n, 2)).astype(np.float32)
    gx, gy = u / c + rng.uniform(0, n), v / c + rng.uniform(0, n)
    ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    d1 = np.full(u.shape, np.inf, dtype=np.float32)
    d2 = d1.copy()
    for dj in (-1, 0, 1):
        for di in (-1, 0, 1):
            cx, cy = ix + di, iy + dj
            j = jitter[cy % n, cx % n]
            d = np.hypot(gx - cx - j[..., 0], gy - cy - j[..., 1])
            d2 = np.minimum(d2, np.maximum(d1, d))
            d1 = np.minimum(d1, d)
    return _aa(1.3 - (d2 - d1) * c / 2.0, k)


def camo(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    n = 0.7 * _noise(rng, u, v, 9.0) + 0.3 * _noise(rng, u, v, 4.0)
    return np.clip((n - 0.5) * 10.0 + 0.5, 0.0, 1.0)


def grid(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    p, half = 14.0, 1.5
    a, b = (u + rng.uniform(0, p)) / p, (v + rng.uniform(0, p)) / p
    return _aa(half - np.minimum(_tri(a), _tri(b)) * p, k)


def scales(u: np.ndarray, v: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    """Fish scales: rows of overlapping discs, each shaded from its centre to a dark rim."""
    p = 13.0
    h = p / 2.0
    u = u + rng.uniform(0, p)
    j0 = np.floor(v / h)

    def row(j: np.ndarray) -> np.ndarray:
        off = (j % 2) * h
        return np.hypot(u - (np.round((u - off) / p) * p + off), v - j * h)

    d1, d0 = row(j0 + 1), row(j0)
    d = np.where(d1 < h, d1, d0)
    return np.maximum(np.clip(d / h, 0, 1) ** 2 * 0.75, _aa(d - (h - 1.2), k))


def instance_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two contrasting colours (3,) float32 of one object: random hue, light/dark either way."""
    h = rng.random()
    if rng.random() < 0.5:  # two hues
        a = hsv(h, rng.uniform(0.45, 0.9), rng.uniform(0.82, 1.0))
        b = hsv(h + rng.uniform(0.2, 0.5), rng.uniform(0.5, 0.95), rng.uniform(0.22, 0.5))
    else:  # one hue, pale and deep
        a = hsv(h, rng.uniform(0.1, 0.4), rng.uniform(0.9, 1.0))
        b = hsv(h, rng.uniform(0.65, 1.0), rng.uniform(0.3, 0.6))
    return (a, b) if rng.random() < 0.5 else (b, a)


# ---- stuff surfaces (one per stuff class) -------------------------------------------------------


def sky(x: np.ndarray, y: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    top = hsv(rng.uniform(0.55, 0.63), rng.uniform(0.45, 0.8), rng.uniform(0.7, 0.92))
    if rng.random() < 0.25:  # dusk
        horizon = hsv(rng.uniform(0.02, 0.1), rng.uniform(0.3, 0.55), rng.uniform(0.92, 1.0))
    else:
        horizon = hsv(rng.uniform(0.5, 0.58), rng.uniform(0.06, 0.25), rng.uniform(0.93, 1.0))
    g = np.clip(y / rng.uniform(110, 220), 0, 1)[..., None] ** 0.8
    rgb = top + (horizon - top) * g
    n = 0.65 * _noise(rng, x / 3.0, y, 14.0) + 0.35 * _noise(rng, x / 2.0, y, 7.0)
    cloud = smoothstep(0.5, 0.75, n)[..., None] * rng.uniform(0.4, 0.9)
    return rgb + (0.97 - rgb) * cloud


def grass(x: np.ndarray, y: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    base = hsv(rng.uniform(0.19, 0.32), rng.uniform(0.5, 0.85), rng.uniform(0.45, 0.7))
    dry = hsv(rng.uniform(0.12, 0.17), rng.uniform(0.4, 0.7), rng.uniform(0.55, 0.75))
    blades = _noise(rng, x, y / 5.0, 1.3)  # thin vertical streaks
    patch = smoothstep(0.45, 0.8, _noise(rng, x, y, 30.0))[..., None] * 0.5
    shade = (0.5 + 0.6 * blades + 0.12 * rng.random(x.shape, dtype=np.float32))[..., None]
    return (base + (dry - base) * patch) * shade


def brick(x: np.ndarray, y: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    hb, wb, n = 11.0, 24.0, 32
    y = y + rng.uniform(0, hb)
    row = np.floor(y / hb)
    xs = x + (row % 2) * wb / 2 + rng.uniform(0, wb)
    col = np.floor(xs / wb)
    mortar = _aa(1.0 - np.minimum(_tri(y / hb) * hb, _tri(xs / wb) * wb), k)[..., None]
    jitter = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    per_brick = jitter[row.astype(np.int64) % n, col.astype(np.int64) % n]
    shade = 1.0 + 0.13 * per_brick + 0.08 * (rng.random(x.shape, dtype=np.float32) - 0.5)
    stone = hsv(rng.uniform(0.0, 0.07), rng.uniform(0.35, 0.75), rng.uniform(0.5, 0.72))
    grout = hsv(rng.uniform(0.08, 0.12), rng.uniform(0.05, 0.2), rng.uniform(0.7, 0.85))
    return stone * shade[..., None] * (1 - mortar) + grout * mortar


def water(x: np.ndarray, y: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    base = hsv(rng.uniform(0.48, 0.6), rng.uniform(0.55, 0.9), rng.uniform(0.4, 0.65))
    swell = 0.3 * np.sin(TAU * x / rng.uniform(50, 90) + rng.uniform(0, TAU))
    w = np.sin(TAU * (y / 9.0 + swell + 0.5 * _noise(rng, x, y, 18.0)))
    depth = 0.85 + 0.25 * _noise(rng, x / 3.0, y, 12.0)  # broad light and dark patches
    sparkle = smoothstep(0.55, 0.75, _noise(rng, x / 2.5, y * 2.0, 3.0))  # short glints
    glint = smoothstep(0.7, 1.0, w) * sparkle
    rgb = base * (depth * (0.9 + 0.1 * w))[..., None]
    return rgb + (1.0 - rgb) * glint[..., None] * 0.7


def sand(x: np.ndarray, y: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    base = hsv(rng.uniform(0.07, 0.12), rng.uniform(0.3, 0.55), rng.uniform(0.75, 0.92))
    a = rng.uniform(-0.5, 0.5)
    along = x * np.cos(a) + y * np.sin(a)
    ripple = np.sin(TAU * along / 14.0 + 2.0 * _noise(rng, x, y, 20.0))
    grain = rng.random(x.shape, dtype=np.float32) - 0.5
    return base * (0.92 + 0.16 * grain + 0.05 * ripple + 0.06 * _noise(rng, x, y, 1.5))[..., None]
