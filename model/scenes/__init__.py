"""Built-in synthetic scenes: scene-centric images with exact ground truth, in COCO layout.

Data for the demo and the tests, not part of the network: shapes.py (signed distance functions of
the objects), textures.py (object patterns and stuff surfaces), render.py (one scene from a seed),
palettes.py (object colours: the natural style's class palettes and pairs), dataset.py (a data
set in COCO layout, written atomically) and cli.py:

    python -m model.scenes --out data/scenes --images 2000 --size 192 --seed 0 [--style hard]

Imports no torch: the command and its worker processes run without it.
"""

from model.scenes.cli import build_parser, main
from model.scenes.dataset import find_complete, is_scenes_dir, write_scenes
from model.scenes.palettes import PALETTES, palette_of
from model.scenes.render import (
    CATEGORIES,
    DEFAULT_STYLE,
    DESIGN_SIZE,
    GENERATOR_VERSION,
    MIN_SIZE,
    STUFF_CLASSES,
    STYLES,
    THING_CLASSES,
    render_instances,
    render_scene,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_STYLE",
    "DESIGN_SIZE",
    "GENERATOR_VERSION",
    "MIN_SIZE",
    "PALETTES",
    "STUFF_CLASSES",
    "STYLES",
    "THING_CLASSES",
    "build_parser",
    "find_complete",
    "is_scenes_dir",
    "main",
    "palette_of",
    "render_instances",
    "render_scene",
    "write_scenes",
]
