"""SlotCon's two-view augmentation, with the overlap box each view needs for alignment.

Every random draw comes from an explicit `random.Random`, so a sample's views depend only on
(seed, epoch, index): identical across worker counts and across an interrupted-and-resumed run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Crop(NamedTuple):
    left: float
    top: float
    width: float
    height: float


class TwoViews(NamedTuple):
    view1: torch.Tensor  # (3, S, S) float, ImageNet-normalised
    view2: torch.Tensor
    coords1: torch.Tensor  # (4,) overlap box, XYXY in [0, 1] of view 1 (mirrored if flipped)
    coords2: torch.Tensor
    flip1: torch.Tensor  # () bool
    flip2: torch.Tensor


@dataclass(frozen=True)
class AugmentConfig:
    size: int = 224  # output side of each view
    min_scale: float = 0.08  # crop area fraction range (min_scale, 1)
    min_overlap: float = 0.01  # the second crop must have this fraction of its area in the first


def sample_crop(rng: random.Random, width: int, height: int, min_scale: float) -> Crop:
    """Random-resized-crop box (torchvision's rule: scale (min_scale, 1), ratio 3/4..4/3)."""
    area = width * height
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * rng.uniform(min_scale, 1.0)
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


def _colour(x: torch.Tensor, rng: random.Random, blur_p: float, solarize_p: float) -> torch.Tensor:
    """Photometric part on a (3, S, S) float image in [0, 1]."""
    if rng.random() < 0.8:  # colour jitter, ops in random order (torchvision's behaviour)
        ops = [
            lambda t: TF.adjust_brightness(t, rng.uniform(0.6, 1.4)),
            lambda t: TF.adjust_contrast(t, rng.uniform(0.6, 1.4)),
            lambda t: TF.adjust_saturation(t, rng.uniform(0.8, 1.2)),
            lambda t: TF.adjust_hue(t, rng.uniform(-0.1, 0.1)),
        ]
        rng.shuffle(ops)
        for op in ops:
            x = op(x)
    if rng.random() < 0.2:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if rng.random() < blur_p:
        sigma = rng.uniform(0.1, 2.0)
        side = min(x.shape[-2:])
        kernel = min(2 * math.ceil(3 * sigma) + 1, side if side % 2 else side - 1)  # odd
        x = TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    if rng.random() < solarize_p:
        x = TF.solarize(x, 0.5)
    return x


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> ImageNet-normalised."""
    return TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))


class TwoViewTransform:
    """PIL image (RGB) + rng -> TwoViews; the dataset transform of training."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def _view(self, image: Image.Image, crop: Crop, flip: bool) -> torch.Tensor:
        box = (crop.left, crop.top, crop.left + crop.width, crop.top + crop.height)
        size = (self.cfg.size, self.cfg.size)
        patch = image.resize(size, Image.Resampling.BICUBIC, box=box)
        x = TF.to_dtype(TF.pil_to_tensor(patch), torch.float32, scale=True)  # (3, S, S)
        return x.flip(-1) if flip else x

    def __call__(self, image: Image.Image, rng: random.Random) -> TwoViews:
        W, H = image.size
        crop1 = sample_crop(rng, W, H, self.cfg.min_scale)
        for _ in range(10):
            crop2 = sample_crop(rng, W, H, self.cfg.min_scale)
            x1, y1, x2, y2 = _intersection(crop1, crop2)
            if (x2 - x1) * (y2 - y1) >= self.cfg.min_overlap * crop2.width * crop2.height:
                break
        else:
            crop2 = crop1  # never leave the views without a common region
        box = _intersection(crop1, crop2)
        flip1, flip2 = rng.random() < 0.5, rng.random() < 0.5
        view1 = _colour(self._view(image, crop1, flip1), rng, blur_p=1.0, solarize_p=0.0)
        view2 = _colour(self._view(image, crop2, flip2), rng, blur_p=0.1, solarize_p=0.2)
        return TwoViews(
            normalize(view1),
            normalize(view2),
            overlap_coords(crop1, box, flip1),
            overlap_coords(crop2, box, flip2),
            torch.tensor(flip1),
            torch.tensor(flip2),
        )
