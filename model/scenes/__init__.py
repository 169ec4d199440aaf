"""Built-in synthetic scenes: scene-centric images with exact ground truth, in COCO layout.

Data for the demo and the tests, not part of the network: shapes.py (signed distance functions of
the objects), textures.py (object patterns and stuff surfaces), render.py (one scene from a seed),
dataset.py (a data set in COCO layout, written atomically) and cli.py:

    python -m model.scenes --out data/scenes --images 2000 --size 192 --seed 0

Imports no torch: the command and its worker processes run without it.
"""

from model.scenes.cli import build_parser, main
from model.scenes.dataset import find_complete, is_scenes_dir, write_scenes
from model.scenes.render import (
    CATEGORIES,
    DESIGN_SIZE,
    GENERATOR_VERSION,
    MIN_SIZE,
    STUFF_CLASSES,
    THING_CLASSES,
    render_instances,
    render_scene,
)

__all__ = [
    "CATEGORIES",
    "DESIGN_SIZE",
    "GENERATOR_VERSION",
    "MIN_SIZE",
    "STUFF_CLASSES",
    "THING_CLASSES",
    "build_parser",
    "find_complete",
    "is_scenes_dir",
    "main",
    "render_instances",
    "render_scene",
    "write_scenes",
]
