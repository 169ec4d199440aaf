"""Ground-truth label maps from COCO-format annotations and COCO-Stuff label PNGs.

Every label map here is (H, W) uint8 holding a class index, 255 = unlabelled (IGNORE_INDEX).
`CocoLabels` rasterises COCO JSON annotations (polygons or RLE, via pycocotools), so it works on
COCO + COCO-Stuff as well as on any COCO-format data set (e.g. the project's synthetic scenes);
`read_stuffthing_png` reads COCO-Stuff's ready-made stuffthingmaps PNGs.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from indexing.scores.cocostuff import (
    COCOSTUFF27_CLASSES,
    COCOSTUFF27_IS_THING,
    FINE_TO_COARSE27,
    IGNORE_INDEX,
    UNLABELLED_STUFF_ID,
    stuffthing_png_lut,
)


class ImageInfo(NamedTuple):
    file_name: str  # relative to the image folder, as in the JSON
    width: int  # W, pixels
    height: int  # H, pixels


@dataclass(frozen=True)
class _Category:
    id: int  # category id in the JSON
    name: str
    is_thing: bool


def _load_coco(path: str | Path) -> COCO:
    # pycocotools prints progress lines on stdout; keep command-line output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _categories(coco: COCO, default_is_thing: bool) -> list[_Category]:
    """Categories of one JSON; `isthing` wins when present, else the JSON's role decides."""
    cats = []
    for cat in coco.loadCats(coco.getCatIds()):
        is_thing = bool(cat.get("isthing", default_is_thing))
        cats.append(_Category(int(cat["id"]), str(cat["name"]), is_thing))
    return cats


class CocoLabels:
    """Semantic label maps of a COCO-format data set; load once, query many times.

    Classes: without `coarse`, the JSONs' categories in id order (COCO-Stuff's "other", id 183 in
    the stuff JSON, is unlabelled); with `coarse`, the 27 COCO-Stuff coarse classes
    (indexing.scores.cocostuff.COCOSTUFF27_CLASSES), which needs COCO / COCO-Stuff category ids.

    Overlaps: stuff annotations are painted first, in annotation order (later wins), then things
    from the largest to the smallest mask (ties: annotation order), so things cover stuff and a
    small object lying on a larger one stays visible. Crowd annotations are painted like others.
    Pixels covered by no annotation are 255.
    """

    def __init__(
        self,
        instances_json: str | Path,
        stuff_json: str | Path | None = None,
        coarse: bool = False,
    ) -> None:
        """instances_json: COCO instances-style JSON (things unless categories say `isthing`);
        stuff_json: optional COCO-Stuff stuff JSON (stuff_val2017.json), same image ids."""
        self.coarse = coarse
        self._cocos = [_load_coco(instances_json)]
        categories = _categories(self._cocos[0], default_is_thing=True)
        if stuff_json is not None:
            self._cocos.append(_load_coco(stuff_json))
            stuff = _categories(self._cocos[1], default_is_thing=False)
            categories += [c for c in stuff if c.id != UNLABELLED_STUFF_ID]
        self._categories = _merge_categories(categories)
        if coarse:
            self.class_names = list(COCOSTUFF27_CLASSES)
            self.class_is_thing = list(COCOSTUFF27_IS_THING)
            self._category_to_class = _coarse_class_table(self._categories.values())
        else:
            ordered = sorted(self._categories.values(), key=lambda c: c.id)
            self.class_names = [c.name for c in ordered]
            self.class_is_thing = [c.is_thing for c in ordered]
            self._category_to_class = {c.id: i for i, c in enumerate(ordered)}
        if len(self.class_names) >= IGNORE_INDEX:
            raise ValueError(f"{len(self.class_names)} classes do not fit uint8 label maps")
        self.image_ids: list[int] = sorted({i for coco in self._cocos for i in coco.imgs})

    @property
    def num_classes(self) -> int:
        """C, the number of classes; label values are 0..C-1 and 255."""
        return len(self.class_names)

    def image_info(self, image_id: int) -> ImageInfo:
        """File name and size of one image; KeyError for an unknown id."""
        for coco in self._cocos:
            if image_id in coco.imgs:
                img = coco.imgs[image_id]
                return ImageInfo(str(img["file_name"]), int(img["width"]), int(img["height"]))
        raise KeyError(f"image id {image_id} is in none of the annotation files")

    def label_map(self, image_id: int) -> np.ndarray:
        """(H, W) uint8 class indices in `class_names` order, 255 = unlabelled."""
        info = self.image_info(image_id)
        labels = np.full((info.height, info.width), IGNORE_INDEX, dtype=np.uint8)
        for rle, class_index in self._paint_order(image_id):
            labels[mask_utils.decode(rle).astype(bool)] = class_index
        return labels

    def _paint_order(self, image_id: int) -> list[tuple[dict, int]]:
        """(RLE, class) of the image's annotations, in the order they are painted."""
        layers = []  # (sort key, RLE, class)
        for coco in self._cocos:
            for order, ann in enumerate(coco.imgToAnns.get(image_id, [])):
                category_id = int(ann["category_id"])
                if category_id not in self._category_to_class:
                    continue  # unlabelled ("other")
                rle = coco.annToRLE(ann)
                if self._categories[category_id].is_thing:
                    key = (1, -float(mask_utils.area(rle)), order)  # after stuff, largest first
                else:
                    key = (0, 0.0, order)
                layers.append((key, rle, self._category_to_class[category_id]))
        layers.sort(key=lambda layer: layer[0])
        return [(rle, class_index) for _, rle, class_index in layers]


def _merge_categories(categories: Iterable[_Category]) -> dict[int, _Category]:
    merged: dict[int, _Category] = {}
    for cat in categories:
        if cat.id in merged and merged[cat.id] != cat:
            raise ValueError(f"category id {cat.id} differs between files: {merged[cat.id]}, {cat}")
        merged[cat.id] = cat
    return merged


def _coarse_class_table(categories: Iterable[_Category]) -> dict[int, int]:
    """Category id -> coarse class 0..26; the JSON must use COCO-Stuff ids."""
    table = {}
    for cat in categories:
        if cat.id not in FINE_TO_COARSE27:
            raise ValueError(
                f"category {cat.id} ({cat.name!r}) is not a COCO-Stuff id; coarse=True needs "
                "COCO things (1-90) / COCO-Stuff stuff (92-182) ids"
            )
        table[cat.id] = FINE_TO_COARSE27[cat.id]
    return table


def read_stuffthing_png(path: str | Path, coarse: bool = True) -> np.ndarray:
    """Read a COCO-Stuff stuffthingmaps PNG (8-bit, value = category id - 1, 255 unlabelled).

    Returns (H, W) uint8: coarse class indices 0..26 in COCOSTUFF27_CLASSES order (coarse=True) or
    fine indices 0..181 = category id - 1 (coarse=False); unused ids and 255 give 255.
    """
    with Image.open(path) as img:
        if img.mode not in ("L", "P"):  # P: palette indices are the values
            raise ValueError(f"{path}: expected an 8-bit label PNG, got mode {img.mode}")
        values = np.asarray(img, dtype=np.uint8)
    return stuffthing_png_lut(coarse)[values]
