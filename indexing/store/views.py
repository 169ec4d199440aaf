"""Fixed views of an image: torchvision's Resize (shorter side) then a centre crop.

PiCIE's evaluation set is resized to 320 and centre-cropped to 320; the authors' prototype
visualisation (viz_slots.py) resizes to 256 and crops 224. The same arithmetic as
torchvision.transforms.functional (resize: the longer side truncated; crop: offsets rounded),
so that crops, label crops and the geometry that maps them back to the image agree. An index
records the view it was built with (manifest build.view); a query or a score uses the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image

from model.transforms import Preprocessed, counted_region


@dataclass(frozen=True)
class View:
    resize: int  # shorter side after the resize (bilinear for images, nearest for labels)
    crop: int  # side of the centre crop the model sees


PICIE_VIEW = View(resize=320, crop=320)  # PiCIE / STEGO eval set, behind the paper's numbers
AUTHORS_VIEW = View(resize=256, crop=224)  # the authors' prototype visualisation


class ViewGeometry(NamedTuple):
    resized_size: tuple[int, int]  # (rw, rh) after the resize
    offset: tuple[int, int]  # (left, top) of the crop in resized pixels


def view_geometry(image_size: tuple[int, int], view: View) -> ViewGeometry:
    """Where the view's crop lies for an image of (W, H) pixels."""
    W, H = image_size
    short, long = min(W, H), max(W, H)
    long_resized = int(view.resize * long / short)  # torchvision truncates
    rw, rh = (view.resize, long_resized) if W <= H else (long_resized, view.resize)
    left, top = int(round((rw - view.crop) / 2.0)), int(round((rh - view.crop) / 2.0))
    return ViewGeometry((rw, rh), (left, top))


def view_image(image: Image.Image, view: View) -> Image.Image:
    """RGB image -> (crop x crop) RGB: shorter side to view.resize (bilinear), centre crop."""
    resized = TF.resize(image, view.resize, TF.InterpolationMode.BILINEAR)
    return TF.center_crop(resized, view.crop)


def view_labels(label_map: np.ndarray, view: View) -> np.ndarray:
    """(H, W) uint8 labels -> (crop, crop) uint8, as view_image (nearest neighbour)."""
    resized = TF.resize(Image.fromarray(label_map), view.resize, TF.InterpolationMode.NEAREST)
    return np.asarray(TF.center_crop(resized, view.crop))


def crop_region(image_size: tuple[int, int], view: View, stride: int) -> tuple[int, ...]:
    """(x0, y0, x1, y1): the pixels of a (W, H) image that the view's crop covers, as the
    extraction counts them (model.counted_region)."""
    resized_size, offset = view_geometry(image_size, view)
    cells = math.ceil(view.crop / stride)
    return counted_region(Preprocessed(image_size, resized_size, (cells, cells), offset), stride)
