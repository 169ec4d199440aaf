"""The fast training pipeline for small collections: decode once, augment whole batches.

On a 2-core machine the per-sample PIL pipeline (decode, two bicubic crops, jitter, blur) took
about half of the CPU of a demo run. Here every image is decoded once into memory (uint8) and
the two views of a whole batch are made with tensor ops: the crops by RoIAlign (bilinear, each
output pixel averaging ceil(crop / view) samples per axis, so a shrinking crop is antialiased),
then model.photometric. The random draws are model.augment's `draw_views`, keyed by (seed,
epoch, index) as in the PIL pipeline, so a run is deterministic and resumes exactly.
"""

from __future__ import annotations

import random
import warnings
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align
from tqdm import tqdm

from model.augment import (
    AugmentConfig,
    LocalDraw,
    TwoViews,
    draw_locals,
    draw_views,
    normalize,
    overlap_coords,
)
from model.data import ImageCollection, UnreadableImage, load_rgb
from model.photometric import apply_colour, shift_hue_field

MAX_DECODED_BYTES = 8 * 2**30  # beyond this, use the PIL pipeline (it streams from disk)


class DecodedImages:
    """Every readable image of a collection, decoded once: uint8 (3, H, W) tensors in memory.

    Unreadable files are skipped with a warning and counted in `skipped`; when all images share
    one size they are kept as one (N, 3, H, W) tensor, which batches without copying per image.
    `progress` shows a bar (rate, time left): a large collection takes minutes to decode.
    """

    def __init__(
        self,
        collection: ImageCollection,
        max_bytes: int = MAX_DECODED_BYTES,
        progress: bool = False,
    ):
        images, total, self.skipped = [], 0, []
        paths = tqdm(collection.paths, desc="decode", unit="image", disable=not progress)
        for path in paths:
            try:
                array = np.array(load_rgb(path))  # (H, W, 3) uint8, writable
            except UnreadableImage as error:
                warnings.warn(f"skipping unreadable image {error}", stacklevel=2)
                self.skipped.append(path)
                continue
            total += array.nbytes
            if total > max_bytes:
                raise ValueError(
                    f"the decoded images of {collection.root} exceed {max_bytes / 2**30:.0f} GiB; "
                    "use --pipeline pil, which reads them from disk"
                )
            images.append(torch.from_numpy(array).permute(2, 0, 1).contiguous())
        if not images:
            raise UnreadableImage(f"no readable image under {collection.root}")
        sizes = {tuple(t.shape) for t in images}
        self.stacked = torch.stack(images) if len(sizes) == 1 else None
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices: list[int]) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1]; images of other sizes are padded to the largest by
        repeating their border (crops never reach the padding, RoIAlign's edge samples may)."""
        if self.stacked is not None:
            return self.stacked[indices].float().div_(255)
        chosen = [self.images[i] for i in indices]
        H = max(t.shape[1] for t in chosen)
        W = max(t.shape[2] for t in chosen)
        padded = [
            F.pad(t[None].float(), (0, W - t.shape[2], 0, H - t.shape[1]), mode="replicate")
            for t in chosen
        ]
        return torch.cat(padded).div_(255)


class ManyViews(NamedTuple):
    """TwoViews of a batch and its local views: `local_views` (B, n, 3, s, s) normalised,
    `local_boxes` (B, n, 4) each local crop in its parent view's normalised XYXY coordinates
    (mirrored when the parent is flipped), `local_flips` (B, n) bool. Local j's parent is view 1
    for even j, view 2 for odd j."""

    view1: torch.Tensor
    view2: torch.Tensor
    coords1: torch.Tensor
    coords2: torch.Tensor
    flip1: torch.Tensor
    flip2: torch.Tensor
    local_views: torch.Tensor
    local_boxes: torch.Tensor
    local_flips: torch.Tensor


class BatchTwoViews:
    """Keys epoch * N + i (as EpochSampler yields them) -> TwoViews of the whole batch:
    views (B, 3, S, S) normalised, coords (B, 4), flips (B,) bool; ManyViews when the config
    asks for local views."""

    def __init__(self, images: DecodedImages, cfg: AugmentConfig, seed: int = 0):
        self.images, self.cfg, self.seed = images, cfg, seed

    def __call__(self, keys: list[int]) -> TwoViews | ManyViews:
        N, S = len(self.images), self.cfg.size
        indices, draws, local_draws = [], [], []
        for key in keys:
            epoch, index = divmod(int(key), N)
            H, W = self.images.images[index].shape[1:]
            rng = random.Random(f"{self.seed}/{epoch}/{index}")
            draws.append(draw_views(rng, W, H, self.cfg))
            local_draws.append(draw_locals(rng, draws[-1], W, H, self.cfg))
            indices.append(index)
        B = len(keys)
        # every list below: the B first views, then the B second views
        crops = [d.crop1 for d in draws] + [d.crop2 for d in draws]
        flipped = [d.flip1 for d in draws] + [d.flip2 for d in draws]
        colours = [d.colour1 for d in draws] + [d.colour2 for d in draws]
        overlaps = [d.overlap for d in draws] * 2
        boxes = torch.tensor(
            [[i % B, *c.box] for i, c in enumerate(crops)], dtype=torch.float32
        )  # (2B, 5): batch index, XYXY image pixels
        images = self.images.batch(indices)
        pixels = roi_align(images, boxes, (S, S), 1.0, -1, aligned=True)
        flips = torch.tensor(flipped)  # (2B,)
        pixels = torch.where(flips.view(-1, 1, 1, 1), pixels.flip(-1), pixels).clamp_(0, 1)
        views = normalize(apply_colour(pixels, colours))
        coords = torch.stack(
            [overlap_coords(c, o, f) for c, o, f in zip(crops, overlaps, flipped)]
        )  # (2B, 4)
        two = TwoViews(views[:B], views[B:], coords[:B], coords[B:], flips[:B], flips[B:])
        if not self.cfg.local_views:
            return two
        return ManyViews(*two, *self._locals(images, draws, local_draws))

    def _locals(self, images: torch.Tensor, draws, local_draws: list[list[LocalDraw]]):
        """The batch's images (B, 3, H, W) -> (B, n, 3, s, s) local views, (B, n, 4) their boxes
        in the parent views, (B, n) flips."""
        B, n, s = images.shape[0], self.cfg.local_views, self.cfg.local_size
        flat = [(i, d, ld) for i, (d, lds) in enumerate(zip(draws, local_draws)) for ld in lds]
        boxes = torch.tensor([[i, *ld.crop.box] for i, _, ld in flat], dtype=torch.float32)
        pixels = roi_align(images, boxes, (s, s), 1.0, -1, aligned=True)
        flips = torch.tensor([ld.flip for _, _, ld in flat])
        pixels = torch.where(flips.view(-1, 1, 1, 1), pixels.flip(-1), pixels).clamp_(0, 1)
        pixels = apply_colour(pixels, [ld.colour for _, _, ld in flat])
        g = self.cfg.local_hue_cells
        if g:
            cells = torch.tensor([ld.hue_cells for _, _, ld in flat]).view(-1, g, g)
            pixels = shift_hue_field(pixels, cells)
        views = normalize(pixels)
        in_parent = []
        for _, d, ld in flat:
            parent, flip = (d.crop1, d.flip1) if ld.parent == 0 else (d.crop2, d.flip2)
            in_parent.append(overlap_coords(parent, ld.crop.box, flip))
        return (
            views.view(B, n, 3, s, s),
            torch.stack(in_parent).view(B, n, 4),
            flips.view(B, n),
        )
