"""Object colours of the two scene styles: class palettes (natural) and random colours (hard).

In photographs colour is a strong but incomplete cue to a class (grass is green, buses are often
red or yellow, people wear anything). The natural style copies that: each thing class has a
characteristic two-tone palette, and each palette is shared by exactly two classes that differ in
shape and pattern, so colour alone tells at most six of the twelve classes apart and shape and
pattern must do the rest. The palettes and pairs, as HSV (hue, saturation, value) in 0..1:

| palette          | colour A (ground)  | colour B (pattern) | classes sharing it              |
|------------------|--------------------|--------------------|---------------------------------|
| 0 red / cream    | (0.00, 0.85, 0.80) | (0.11, 0.15, 0.95) | dotted disc, striped square     |
| 1 yellow / black | (0.14, 0.90, 0.95) | (0.14, 0.30, 0.15) | checkered triangle, ringed star |
| 2 teal / white   | (0.48, 0.75, 0.55) | (0.48, 0.08, 0.95) | zigzag cross, speckled ring     |
| 3 purple / lime  | (0.78, 0.55, 0.55) | (0.25, 0.65, 0.85) | sunburst hexagon, wavy heart    |
| 4 orange / navy  | (0.07, 0.90, 0.95) | (0.64, 0.75, 0.35) | cell crescent, camo diamond     |
| 5 pink / grey    | (0.92, 0.45, 0.95) | (0.00, 0.00, 0.45) | grid ellipse, scaly L-block     |

Pairs are the class list taken two at a time, in its order (classes 2p and 2p + 1 share palette
p); the main hues are spread around the circle. An instance's colours are its palette's, each
jittered (hue +-0.04 of the circle, saturation and value +-0.15, clipped); 15 % of instances
(RANDOM_SHARE) get random colours instead, as every instance of the hard style does. These rules
were fixed before any model was trained on the style and are not tuned to what a model finds.
"""

from __future__ import annotations

import numpy as np

from model.scenes import textures as tex

# (name, colour A, colour B): HSV in 0..1. Index p serves thing classes 2p and 2p + 1.
PALETTES: list[tuple[str, tuple[float, float, float], tuple[float, float, float]]] = [
    ("red / cream", (0.00, 0.85, 0.80), (0.11, 0.15, 0.95)),
    ("yellow / black", (0.14, 0.90, 0.95), (0.14, 0.30, 0.15)),
    ("teal / white", (0.48, 0.75, 0.55), (0.48, 0.08, 0.95)),
    ("purple / lime", (0.78, 0.55, 0.55), (0.25, 0.65, 0.85)),
    ("orange / navy", (0.07, 0.90, 0.95), (0.64, 0.75, 0.35)),
    ("pink / grey", (0.92, 0.45, 0.95), (0.00, 0.00, 0.45)),
]
HUE_JITTER = 0.04  # of the hue circle
SV_JITTER = 0.15  # saturation and value
RANDOM_SHARE = 0.15  # instances of the natural style drawn in random colours


def palette_of(cls: int) -> int:
    """The palette index of thing class ``cls`` (0-based): classes 2p and 2p + 1 share p."""
    return cls // 2


def _jittered(rng: np.random.Generator, h: float, s: float, v: float) -> np.ndarray:
    dh, ds, dv = rng.uniform(-1.0, 1.0, 3) * (HUE_JITTER, SV_JITTER, SV_JITTER)
    return tex.hsv(h + dh, float(np.clip(s + ds, 0.0, 1.0)), float(np.clip(v + dv, 0.0, 1.0)))


def natural_colours(rng: np.random.Generator, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """The two colours (3,) float32 RGB in 0..1 of one instance of thing class ``cls``
    (0-based) in the natural style: its palette's, jittered, or random for RANDOM_SHARE."""
    if rng.random() < RANDOM_SHARE:
        return tex.instance_colours(rng)
    _, a, b = PALETTES[palette_of(cls)]
    return _jittered(rng, *a), _jittered(rng, *b)


def hard_colours(rng: np.random.Generator, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """The two colours of an instance in the hard style: random, whatever the class."""
    return tex.instance_colours(rng)
