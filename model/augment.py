"""SlotCon's two-view augmentation, with the overlap box each view needs for alignment.

Every random draw comes from an explicit `random.Random`, so a sample's views depend only on
(seed, epoch, index): identical across worker counts and across an interrupted-and-resumed run.
`draw_views` makes all the draws of one sample; `TwoViewTransform` applies them to a PIL image
(bicubic crops, the paper's way), model.tensor_views to a batch of decoded images.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from model.photometric import ColourParams, apply_colour, draw_colour

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Crop(NamedTuple):
    left: float
    top: float
    width: float
    height: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """XYXY in image pixels."""
        return self.left, self.top, self.left + self.width, self.top + self.height


class TwoViews(NamedTuple):
    view1: torch.Tensor  # (3, S, S) float, ImageNet-normalised
    view2: torch.Tensor
    coords1: torch.Tensor  # (4,) overlap box, XYXY in [0, 1] of view 1 (mirrored if flipped)
    coords2: torch.Tensor
    flip1: torch.Tensor  # () bool
    flip2: torch.Tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Paper values by default (Wen et al., NeurIPS 2022, arXiv:2205.15288); the demo preset
    changes some (model/config.py)."""

    size: int = 224  # output side of each view
    min_scale: float = 0.08  # crop area fraction range (min_scale, max_scale)
    min_overlap: float = 0.01  # the second crop must have this fraction of its area in the first
    max_scale: float = 1.0
    hue: float = 0.1  # largest hue shift of the colour jitter, in turns (0.5: whole circle)
    grayscale: float = 0.2  # probability of a grayscale view
    channel_shuffle: float = 0.0  # probability of a random RGB permutation
    blur_sigma: float = 2.0  # largest blur sigma in view px (smallest: 1/20 of it)
    local_views: int = 0  # small student-only views per image, each inside one of the two views
    local_size: int = 48
    local_min_scale: float = 0.02  # local crop area fraction of the image
    local_max_scale: float = 0.08
    local_hue: float = 0.1
    local_channel_shuffle: float = 0.0
    local_hue_cells: int = 0  # g > 0: a g x g random hue-shift field per local view


class ViewDraws(NamedTuple):
    """Everything random about one sample's two views."""

    crop1: Crop
    crop2: Crop
    overlap: tuple[float, float, float, float]  # XYXY image pixels
    flip1: bool
    flip2: bool
    colour1: ColourParams
    colour2: ColourParams


def sample_crop(
    rng: random.Random, width: int, height: int, min_scale: float, max_scale: float = 1.0
) -> Crop:
    """Random-resized-crop box (torchvision's rule: scale (min_scale, max_scale), ratio
    3/4..4/3)."""
    area = width * height
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * rng.uniform(min_scale, max_scale)
        ratio = math.exp(rng.uniform(*log_ratio))
        w, h = math.sqrt(target * ratio), math.sqrt(target / ratio)
        if 0 < w <= width and 0 < h <= height:
            return Crop(rng.uniform(0, width - w), rng.uniform(0, height - h), w, h)
    side = min(width, height)  # fallback: centred square crop
    return Crop((width - side) / 2, (height - side) / 2, side, side)


def _intersection(a: Crop, b: Crop) -> tuple[float, float, float, float]:
    x1, y1 = max(a.left, b.left), max(a.top, b.top)
    x2 = min(a.left + a.width, b.left + b.width)
    y2 = min(a.top + a.height, b.top + b.height)
    return x1, y1, max(x1, x2), max(y1, y2)


def overlap_coords(crop: Crop, box: tuple[float, float, float, float], flip: bool) -> torch.Tensor:
    """The image-pixel box `box` in `crop`'s normalised XYXY coordinates, mirrored if flipped."""
    x1, y1, x2, y2 = box
    nx1, nx2 = (x1 - crop.left) / crop.width, (x2 - crop.left) / crop.width
    ny1, ny2 = (y1 - crop.top) / crop.height, (y2 - crop.top) / crop.height
    if flip:
        nx1, nx2 = 1 - nx2, 1 - nx1
    return torch.tensor([nx1, ny1, nx2, ny2], dtype=torch.float32)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> ImageNet-normalised."""
    return TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))


def draw_views(rng: random.Random, width: int, height: int, cfg: AugmentConfig) -> ViewDraws:
    """Crops (the second re-drawn until it overlaps the first enough), flips and colours."""
    crop1 = sample_crop(rng, width, height, cfg.min_scale, cfg.max_scale)
    for _ in range(10):
        crop2 = sample_crop(rng, width, height, cfg.min_scale, cfg.max_scale)
        x1, y1, x2, y2 = _intersection(crop1, crop2)
        if (x2 - x1) * (y2 - y1) >= cfg.min_overlap * crop2.width * crop2.height:
            break
    else:
        crop2 = crop1  # never leave the views without a common region
    flip1, flip2 = rng.random() < 0.5, rng.random() < 0.5
    colour = (cfg.hue, cfg.grayscale, cfg.channel_shuffle, cfg.blur_sigma)
    colour1 = draw_colour(rng, *colour, blur_p=1.0, solarize_p=0.0)  # view 1: always blurred
    colour2 = draw_colour(rng, *colour, blur_p=0.1, solarize_p=0.2)
    return ViewDraws(crop1, crop2, _intersection(crop1, crop2), flip1, flip2, colour1, colour2)


class LocalDraw(NamedTuple):
    """One local view: its crop (inside its parent view's crop), flip and colour."""

    parent: int  # 0: inside view 1's crop, 1: inside view 2's
    crop: Crop
    flip: bool
    colour: ColourParams
    hue_cells: tuple[float, ...]  # g * g hue shifts in turns, row-major; empty when off


def draw_locals(
    rng: random.Random, d: ViewDraws, width: int, height: int, cfg: AugmentConfig
) -> list[LocalDraw]:
    """`cfg.local_views` local crops, alternately inside view 1's and view 2's crop, so that each
    has a teacher map that covers it. Area fraction (local_min_scale, local_max_scale) of the
    image, shrunk to fit its parent. Drawn after `draw_views` from the same rng, so runs without
    local views draw exactly what they drew before."""
    blur = cfg.blur_sigma * cfg.local_size / cfg.size  # the blur scaled to the local view
    locals_ = []
    for j in range(cfg.local_views):
        parent = d.crop1 if j % 2 == 0 else d.crop2
        area = width * height * rng.uniform(cfg.local_min_scale, cfg.local_max_scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = min(math.sqrt(area * ratio), parent.width)
        h = min(math.sqrt(area / ratio), parent.height)
        left = parent.left + rng.uniform(0, parent.width - w)
        top = parent.top + rng.uniform(0, parent.height - h)
        flip = rng.random() < 0.5
        colour = draw_colour(
            rng, cfg.local_hue, cfg.grayscale, cfg.local_channel_shuffle, blur, 0.5, 0.0
        )
        locals_.append(LocalDraw(j % 2, Crop(left, top, w, h), flip, colour, ()))
    # hue fields last, so that turning them on changes nothing else
    g2 = cfg.local_hue_cells**2
    return [d._replace(hue_cells=tuple(rng.uniform(-0.5, 0.5) for _ in range(g2))) for d in locals_]


class TwoViewTransform:
    """PIL image (RGB) + rng -> TwoViews; the dataset transform of training."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def _view(self, image: Image.Image, crop: Crop, flip: bool) -> torch.Tensor:
        size = (self.cfg.size, self.cfg.size)
        patch = image.resize(size, Image.Resampling.BICUBIC, box=crop.box)
        x = TF.to_dtype(TF.pil_to_tensor(patch), torch.float32, scale=True)  # (3, S, S)
        return x.flip(-1) if flip else x

    def __call__(self, image: Image.Image, rng: random.Random) -> TwoViews:
        d = draw_views(rng, *image.size, self.cfg)
        view1 = _colour(self._view(image, d.crop1, d.flip1), d.colour1)
        view2 = _colour(self._view(image, d.crop2, d.flip2), d.colour2)
        return TwoViews(
            normalize(view1),
            normalize(view2),
            overlap_coords(d.crop1, d.overlap, d.flip1),
            overlap_coords(d.crop2, d.overlap, d.flip2),
            torch.tensor(d.flip1),
            torch.tensor(d.flip2),
        )


def _colour(x: torch.Tensor, params: ColourParams) -> torch.Tensor:
    """Photometric part on one (3, S, S) float image in [0, 1]."""
    return apply_colour(x[None], [params])[0]
