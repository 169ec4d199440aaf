"""Preprocessing apart from the network: whole images in, map cells out, pixels back.

A weight-free `ImageTransform` (as segment-anything keeps `ResizeLongestSide` apart from its
predictor) that the encoder holds and that extraction, evaluation and uploads share: the
shorter side is resized to `input_size`, aspect kept, and the image is padded (bottom/right) to a
multiple of the stride; `Preprocessed` says how to crop the maps back; `valid_mask` marks the
map cells that are image rather than padding; `assign_pixels` gives every image pixel the
prototype of the bilinearly upsampled dots, as in the authors' visualisation. Cheap to pickle:
DataLoader workers preprocess with it without the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from model.augment import normalize


class Preprocessed(NamedTuple):
    image_size: tuple[int, int]  # (W, H) of the original image
    resized_size: tuple[int, int]  # (W, H) after the resize, before padding
    map_size: tuple[int, int]  # (w, h) of the map cells that cover the encoder's input
    # (left, top) of the encoder's input in the resized image: (0, 0) for the whole image,
    # else a crop (indexing.store.views); pixels outside it extend the map's border cells
    offset: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class ImageTransform:
    """Resize, pad to the stride, valid cells and pixel assignment of one encoder's geometry."""

    stride: int  # output stride of the encoder: image pixels per map cell along each side
    input_size: int  # default shorter side of the resized image, in pixels

    def apply_image(
        self, image: Image.Image, size: int | None = None
    ) -> tuple[torch.Tensor, Preprocessed]:
        """RGB PIL image -> ((1, 3, H', W') normalised float32 tensor, Preprocessed).

        Shorter side to `size` (default `input_size`), aspect ratio kept, longer side capped at
        4 x size; padded with zeros (the mean colour) to a multiple of the stride.
        """
        size = size or self.input_size
        W, H = image.size
        scale = min(size / min(W, H), 4 * size / max(W, H))
        rw, rh = max(1, round(W * scale)), max(1, round(H * scale))
        resized = image.convert("RGB").resize((rw, rh), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float() / 255
        x = normalize(x)  # (3, rh, rw)
        s = self.stride
        pw, ph = math.ceil(rw / s) * s, math.ceil(rh / s) * s
        x = F.pad(x, (0, pw - rw, 0, ph - rh))  # (3, H', W')
        info = Preprocessed((W, H), (rw, rh), (math.ceil(rw / s), math.ceil(rh / s)))
        return x[None], info

    def valid_mask(self, infos: list[Preprocessed], padded_hw: tuple[int, int]) -> torch.Tensor:
        """(B, 1, h, w) bool for a batch padded to `padded_hw` (H', W'): the map cells that
        cover image pixels rather than padding."""
        h, w = padded_hw[0] // self.stride, padded_hw[1] // self.stride
        mask = torch.zeros(len(infos), 1, h, w, dtype=torch.bool)
        for i, info in enumerate(infos):
            mask[i, :, : info.map_size[1], : info.map_size[0]] = True
        return mask

    def assign_pixels(
        self, dots: torch.Tensor, info: Preprocessed
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """assign_pixels at this transform's stride."""
        return assign_pixels(dots, info, self.stride)

    def counted_region(self, info: Preprocessed) -> tuple[int, int, int, int]:
        """counted_region at this transform's stride."""
        return counted_region(info, self.stride)


@torch.inference_mode()
def assign_pixels(
    dots: torch.Tensor, info: Preprocessed, stride: int, block_rows: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dots (K, h, w) of one padded image -> assignment (H, W) int16, pixels (K,), score (K,).

    Bilinear upsampling of the valid cells to image resolution (cell centres at the centres of
    their stride x stride patches), argmax over K; done in blocks of rows to bound memory for
    K = 256 on large images. score[k] = mean of dots[k] over the pixels assigned to k.
    pixels and score count the pixels of counted_region(info) only: all of them, unless the
    encoder saw a crop (then the map outside the crop only repeats the crop's border).

    Each run of rows upsamples only the prototypes that can win in its quads (candidate_cells):
    the others' interpolated dots are below the winner's everywhere, so the argmax, and every
    value it keeps, are those of upsampling all K (the channels are interpolated independently).
    """
    K = dots.shape[0]
    w_map, h_map = info.map_size
    W, H = info.image_size
    cells = dots[None, :, :h_map, :w_map].float()  # (1, K, h, w)
    gx, inside_x = _grid_axis(info, stride, 0)
    gy, inside_y = _grid_axis(info, stride, 1)
    gx = gx.to(cells.device)
    row_quads = candidate_cells(cells[0]).any(dim=2)  # (K, h): k can win in that row of quads
    assignment = np.empty((H, W), dtype=np.int16)
    pixels = torch.zeros(K, dtype=torch.float64)
    sums = torch.zeros(K, dtype=torch.float64)
    for top, bottom, first, last in _row_groups(gy, h_map, block_rows):
        chosen = row_quads[:, first : last + 1].any(dim=1).nonzero().flatten()
        grid = torch.stack(
            torch.meshgrid(gy[top:bottom].to(cells.device), gx, indexing="ij")[::-1], dim=-1
        )[None]  # (1, rows, W, 2) as (x, y)
        up = F.grid_sample(
            cells[:, chosen], grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        best, winner = up[0].max(dim=0)  # (rows, W), winner indexes `chosen`
        winner = chosen[winner]
        assignment[top:bottom] = winner.cpu().numpy()
        counted = (inside_y[top:bottom, None] & inside_x[None, :]).flatten()
        flat = winner.flatten().cpu()[counted]
        pixels += torch.bincount(flat, minlength=K).double()
        best = best.flatten().cpu()[counted].double()
        sums += torch.bincount(flat, weights=best, minlength=K)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (sums / pixels).float().numpy()
    return assignment, pixels.long().numpy(), score


def candidate_cells(cells: torch.Tensor, margin: float = 1e-4) -> torch.Tensor:
    """Cells (K, h, w) -> (K, h, w) bool: can prototype k be the argmax of the bilinear
    upsampling anywhere in the quad of cells (i, j), (i, j + 1), (i + 1, j), (i + 1, j + 1)?

    An interpolated value lies between the smallest and the largest of its quad's values, so k
    can win there only if its largest reaches the largest of the other prototypes' smallest.
    The last row and column repeat the edge (the border padding of the upsampling); a pixel
    that interpolates fewer cells uses a subset of its quad, for which the test holds too.
    margin (relative to the largest |dot|) covers the interpolation's rounding."""
    padded = F.pad(cells[None], (0, 1, 0, 1), mode="replicate")  # (1, K, h + 1, w + 1)
    high = F.max_pool2d(padded, 2, stride=1)[0]  # (K, h, w)
    low = -F.max_pool2d(-padded, 2, stride=1)[0]
    slack = margin * max(float(cells.abs().max()), 1.0)
    return high >= low.max(dim=0).values - slack


def _row_groups(grid_y: torch.Tensor, cells: int, max_rows: int) -> list[tuple[int, int, int, int]]:
    """Pixel rows -> runs (top, bottom, first, last) of at most max_rows rows that sample the
    same rows of quads first..last. A row whose map coordinate lies within rounding of a cell
    row samples both quads around it (the upsampling rounds its own way)."""
    position = ((grid_y.double() + 1) * cells - 1) / 2

    def quad(shifted: torch.Tensor) -> list[int]:  # clamped as the border padding clamps
        return shifted.clamp(0, cells - 1).floor().long().tolist()

    low, high = quad(position - 1e-4), quad(position + 1e-4)
    groups: list[tuple[int, int, int, int]] = []
    for y, quads in enumerate(zip(low, high)):
        if groups and groups[-1][2:] == quads and y - groups[-1][0] < max_rows:
            groups[-1] = (groups[-1][0], y + 1, *quads)
        else:
            groups.append((y, y + 1, *quads))
    return groups


def _grid_axis(info: Preprocessed, stride: int, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Along x (axis 0) or y (1): each image pixel's sampling coordinate in the map, normalised
    for grid_sample (align_corners=False), and whether it lies in the encoder's input."""
    n_out, n_resized = info.image_size[axis], info.resized_size[axis]
    span = info.map_size[axis] * stride  # the input's side in resized pixels, with padding
    resized = (torch.arange(n_out, dtype=torch.float32) + 0.5) * n_resized / n_out
    resized = resized - info.offset[axis]  # in the encoder's input
    return resized / span * 2 - 1, (resized >= 0) & (resized < span)


def counted_region(info: Preprocessed, stride: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), ends exclusive: the image pixels whose centres the encoder saw (the
    whole image unless it saw a crop). assign_pixels counts these only."""
    ends = []
    for axis in (0, 1):
        inside = _grid_axis(info, stride, axis)[1].nonzero().flatten()
        ends.append((int(inside[0]), int(inside[-1]) + 1) if len(inside) else (0, 0))
    (x0, x1), (y0, y1) = ends
    return x0, y0, x1, y1
