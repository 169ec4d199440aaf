"""COCO-Stuff's 182 category ids and their 27 coarse classes (COCO-Stuff-27).

Sources (facts, not code): the category ids and names are COCO-Stuff's `labels.txt`
(github.com/nightrome/cocostuff); the supercategories of things are those of COCO's
instances_*.json and the supercategories of stuff those of COCO-Stuff's stuff_*.json. The 27
coarse classes are these supercategories, things first, in the order used by IIC, PiCIE and STEGO
(docs/COCOSTUFF27.md describes the protocol and cites these sources).

Ids 1-90 are things (only 80 are used; 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 and 91 were
dropped from COCO), ids 92-182 are stuff, and 183 ("other", in the stuff JSON only) is unlabelled.
"food" and "furniture" are supercategories of both things and stuff; the stuff ones are named
"food-stuff" and "furniture-stuff" here (as in the stuff JSON) so that class names stay unique.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255  # unlabelled pixel in every label map of this project
UNLABELLED_STUFF_ID = 183  # COCO-Stuff's "other": stuff JSON only, treated as unlabelled

# The 27 coarse classes: 12 thing supercategories then 15 stuff supercategories.
COCOSTUFF27_CLASSES: tuple[str, ...] = (
    "electronic", "appliance", "food", "furniture", "indoor", "kitchen",
    "accessory", "animal", "outdoor", "person", "sports", "vehicle",
    "ceiling", "floor", "food-stuff", "furniture-stuff", "rawmaterial", "textile",
    "wall", "window", "building", "ground", "plant", "sky", "solid", "structural", "water",
)  # fmt: skip
COCOSTUFF27_IS_THING: tuple[bool, ...] = (True,) * 12 + (False,) * 15

# id -> (name, supercategory), supercategory spelled as in COCOSTUFF27_CLASSES.
_THINGS: dict[str, tuple[tuple[int, str], ...]] = {
    "person": ((1, "person"),),
    "vehicle": (
        (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
        (7, "train"), (8, "truck"), (9, "boat"),
    ),
    "outdoor": (
        (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"), (14, "parking meter"),
        (15, "bench"),
    ),
    "animal": (
        (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"),
        (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"),
    ),
    "accessory": (
        (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"),
    ),
    "sports": (
        (34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"), (38, "kite"),
        (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"),
        (43, "tennis racket"),
    ),
    "kitchen": (
        (44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"),
        (50, "spoon"), (51, "bowl"),
    ),
    "food": (
        (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
        (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    ),
    "furniture": (
        (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"),
        (70, "toilet"),
    ),
    "electronic": (
        (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
        (77, "cell phone"),
    ),
    "appliance": (
        (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"),
    ),
    "indoor": (
        (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
        (89, "hair drier"), (90, "toothbrush"),
    ),
}  # fmt: skip

# Stuff ids 92..182 in order, with their supercategory.
_STUFF: tuple[tuple[str, str], ...] = (
    ("banner", "textile"), ("blanket", "textile"), ("branch", "plant"),
    ("bridge", "building"), ("building-other", "building"), ("bush", "plant"),
    ("cabinet", "furniture-stuff"), ("cage", "structural"), ("cardboard", "rawmaterial"),
    ("carpet", "floor"), ("ceiling-other", "ceiling"), ("ceiling-tile", "ceiling"),
    ("cloth", "textile"), ("clothes", "textile"), ("clouds", "sky"),
    ("counter", "furniture-stuff"), ("cupboard", "furniture-stuff"), ("curtain", "textile"),
    ("desk-stuff", "furniture-stuff"), ("dirt", "ground"), ("door-stuff", "furniture-stuff"),
    ("fence", "structural"), ("floor-marble", "floor"), ("floor-other", "floor"),
    ("floor-stone", "floor"), ("floor-tile", "floor"), ("floor-wood", "floor"),
    ("flower", "plant"), ("fog", "water"), ("food-other", "food-stuff"),
    ("fruit", "food-stuff"), ("furniture-other", "furniture-stuff"), ("grass", "plant"),
    ("gravel", "ground"), ("ground-other", "ground"), ("hill", "solid"),
    ("house", "building"), ("leaves", "plant"), ("light", "furniture-stuff"),
    ("mat", "textile"), ("metal", "rawmaterial"), ("mirror-stuff", "furniture-stuff"),
    ("moss", "plant"), ("mountain", "solid"), ("mud", "ground"),
    ("napkin", "textile"), ("net", "structural"), ("paper", "rawmaterial"),
    ("pavement", "ground"), ("pillow", "textile"), ("plant-other", "plant"),
    ("plastic", "rawmaterial"), ("platform", "ground"), ("playingfield", "ground"),
    ("railing", "structural"), ("railroad", "ground"), ("river", "water"),
    ("road", "ground"), ("rock", "solid"), ("roof", "building"),
    ("rug", "textile"), ("salad", "food-stuff"), ("sand", "ground"),
    ("sea", "water"), ("shelf", "furniture-stuff"), ("sky-other", "sky"),
    ("skyscraper", "building"), ("snow", "ground"), ("solid-other", "solid"),
    ("stairs", "furniture-stuff"), ("stone", "solid"), ("straw", "plant"),
    ("structural-other", "structural"), ("table", "furniture-stuff"), ("tent", "building"),
    ("textile-other", "textile"), ("towel", "textile"), ("tree", "plant"),
    ("vegetable", "food-stuff"), ("wall-brick", "wall"), ("wall-concrete", "wall"),
    ("wall-other", "wall"), ("wall-panel", "wall"), ("wall-stone", "wall"),
    ("wall-tile", "wall"), ("wall-wood", "wall"), ("water-other", "water"),
    ("waterdrops", "water"), ("window-blind", "window"), ("window-other", "window"),
    ("wood", "solid"),
)  # fmt: skip


def _build_categories() -> dict[int, tuple[str, str]]:
    table = {cid: (name, sup) for sup, cats in _THINGS.items() for cid, name in cats}
    table.update({92 + i: cat for i, cat in enumerate(_STUFF)})
    return dict(sorted(table.items()))


# COCO-Stuff category id (1..182, 171 used) -> (name, coarse supercategory).
COCOSTUFF_CATEGORIES: dict[int, tuple[str, str]] = _build_categories()
# COCO-Stuff category id -> coarse class index 0..26 in COCOSTUFF27_CLASSES.
FINE_TO_COARSE27: dict[int, int] = {
    cid: COCOSTUFF27_CLASSES.index(sup) for cid, (_, sup) in COCOSTUFF_CATEGORIES.items()
}


def stuffthing_png_lut(coarse: bool = True) -> np.ndarray:
    """Lookup table for stuffthingmaps PNG values (category id - 1, 255 unlabelled).

    Returns (256,) uint8: lut[value] is the coarse class 0..26 (coarse=True) or the fine index
    value itself 0..181 (coarse=False); ids COCO-Stuff does not use and 255 map to 255.
    """
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for cid, coarse_index in FINE_TO_COARSE27.items():
        lut[cid - 1] = coarse_index if coarse else cid - 1
    return lut
