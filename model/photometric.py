"""SlotCon's photometric augmentation as batched tensor ops, with parameters drawn per view.

The parameters of one view are drawn from its explicit `random.Random` (`draw_colour`), then
`apply_colour` applies a whole batch's parameters at once: colour jitter in a per-view random
order, grayscale, channel permutation, Gaussian blur, solarisation. Both training pipelines (PIL
per sample and tensors per batch) use these two functions, so they augment alike.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

import torch
import torch.nn.functional as F

BRIGHTNESS, CONTRAST, SATURATION = 0.4, 0.4, 0.2  # paper's jitter strengths
JITTER_P = 0.8
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # luma weights of torchvision


class ColourParams(NamedTuple):
    jitter: bool  # colour jitter applied at all
    order: tuple[
        int, int, int, int
    ]  # order of brightness (0), contrast (1), saturation (2), hue (3)
    brightness: float  # factors as torchvision's adjust_* take them
    contrast: float
    saturation: float
    hue: float  # shift in turns, -0.5..0.5
    grayscale: bool
    channels: tuple[int, int, int]  # RGB permutation (identity when not shuffled)
    blur_sigma: float  # px of the view; 0 = no blur
    solarize: bool


def draw_colour(
    rng: random.Random,
    hue: float,
    grayscale_p: float,
    channel_shuffle_p: float,
    blur_sigma: float,
    blur_p: float,
    solarize_p: float,
) -> ColourParams:
    """One view's photometric parameters. hue: largest shift in turns (0.5 = whole circle);
    blur_sigma: largest sigma in view pixels (the smallest is 1/20 of it, as 0.1..2 px)."""
    jitter = rng.random() < JITTER_P
    factors = (
        rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS),
        rng.uniform(1 - CONTRAST, 1 + CONTRAST),
        rng.uniform(1 - SATURATION, 1 + SATURATION),
        rng.uniform(-hue, hue),
    )
    order = [0, 1, 2, 3]
    rng.shuffle(order)  # torchvision's ColorJitter applies its ops in a random order
    gray = rng.random() < grayscale_p
    channels = [0, 1, 2]
    if rng.random() < channel_shuffle_p:
        rng.shuffle(channels)
    sigma = rng.uniform(blur_sigma / 20, blur_sigma) if rng.random() < blur_p else 0.0
    solarize = rng.random() < solarize_p
    return ColourParams(jitter, tuple(order), *factors, gray, tuple(channels), sigma, solarize)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    r, g, b = x.unbind(1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    return (ratio * x + (1 - ratio) * other).clamp(0, 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV, hue in turns [0, 1) (torchvision's formulas)."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    flat = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    s = chroma / torch.where(flat, ones, maxc)
    div = torch.where(flat, ones, chroma)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.remainder((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) HSV (hue in turns) -> RGB in [0, 1]."""
    h, s, v = x.unbind(1)
    out = []
    for n in (5.0, 3.0, 1.0):  # channel = v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6
        k = torch.remainder(n + 6.0 * h, 6.0)
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0, 1))
    return torch.stack(out, dim=1)


def adjust(x: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    """One jitter op on (B, 3, H, W) with per-image factors (B, 1, 1, 1)."""
    if op == 0:
        return (x * factor).clamp(0, 1)
    if op == 1:
        mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
        return _blend(x, mean, factor)
    if op == 2:
        return _blend(x, grayscale(x), factor)
    hsv = rgb_to_hsv(x)
    hue = torch.remainder(hsv[:, :1] + factor, 1.0)
    return hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1))


def shift_hue_field(x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Shift the hue of (B, 3, H, W) RGB in [0, 1] by a field: cells (B, g, g) shifts in turns,
    bilinear between the cell centres (edges clamped). A different shift in each part of the
    image, so that no colour in it (the sky, say) tells how the others were shifted."""
    field = F.interpolate(cells[:, None].to(x), size=x.shape[-2:], mode="bilinear")
    hsv = rgb_to_hsv(x)
    hue = torch.remainder(hsv[:, :1] + field, 1.0)
    return hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1))


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable blur of (B, C, H, W) with a sigma per image (B,), reflect padding; sigma 0
    leaves an image as it is. Kernel radius ceil(3 sigma), capped by the image size."""
    B, C, H, W = x.shape
    radius = min(math.ceil(3 * float(sigma.max())), (min(H, W) - 1) // 2)
    if radius < 1:
        return x
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x).clamp_min(1e-6)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / s) ** 2)  # (B, k)
    kernel = torch.where(sigma.to(x.device)[:, None] > 0, kernel, (offsets[None] == 0).to(x))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(C, 0)  # (B*C, k)
    y = x.reshape(1, B * C, H, W)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), "reflect"), kernel[:, None, None], groups=B * C)
    y = F.conv2d(
        F.pad(y, (0, 0, radius, radius), "reflect"), kernel[:, None, :, None], groups=B * C
    )
    return y.reshape(B, C, H, W)


def apply_colour(x: torch.Tensor, params: list[ColourParams]) -> torch.Tensor:
    """Photometric augmentation of a batch: x (B, 3, H, W) float in [0, 1], one ColourParams per
    image. Returns a new tensor in [0, 1]."""
    B = x.shape[0]
    x = x.clone()

    def column(values) -> torch.Tensor:
        return torch.tensor(values, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)

    factors = [(p.brightness, p.contrast, p.saturation, p.hue) for p in params]
    for position in range(4):
        for op in range(4):
            rows = [i for i, p in enumerate(params) if p.jitter and p.order[position] == op]
            if rows:
                x[rows] = adjust(x[rows], op, column([factors[i][op] for i in rows]))
    rows = [i for i, p in enumerate(params) if p.grayscale]
    if rows:
        x[rows] = grayscale(x[rows]).expand(-1, 3, -1, -1)
    if any(p.channels != (0, 1, 2) for p in params):
        order = torch.tensor([p.channels for p in params], device=x.device)  # (B, 3)
        x = x[torch.arange(B, device=x.device)[:, None], order]
    rows = [i for i, p in enumerate(params) if p.blur_sigma > 0]
    if rows:
        sigma = torch.tensor([params[i].blur_sigma for i in rows])
        x[rows] = gaussian_blur(x[rows], sigma)
    rows = [i for i, p in enumerate(params) if p.solarize]
    if rows:
        x[rows] = torch.where(x[rows] >= 0.5, 1.0 - x[rows], x[rows])
    return x
