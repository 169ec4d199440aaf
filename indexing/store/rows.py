"""One image's rows: an encoder's output for an image -> the slot rows an index stores.

The build (indexing.build.extract, for every image of the collection) and a query
(indexing.query.upload, for an uploaded image) both go through encode_images, so that an
upload's rows are the ones the build would have stored. Preprocessing is the encoder's own
(shorter side, stride padding) or a fixed view (indexing.store.views); slot rows are computed
at image resolution (model.assign_pixels).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from indexing.store.schema import ImageSlots
from indexing.store.views import View, view_geometry, view_image
from model.encoder import SlotConEncoder
from model.transforms import ImageTransform, Preprocessed, assign_pixels, counted_region


class Geometry(NamedTuple):
    """How the workers preprocess, without the weights; cheap to send to them."""

    transform: ImageTransform  # the encoder's (encoder.transform): shorter side, stride padding
    view: View | None = None  # a fixed centre crop instead (the authors' 256 / 224)


def preprocess(geometry: Geometry, image) -> tuple[torch.Tensor, Preprocessed]:
    """The encoder's own preprocessing (shorter side, stride padding); with a view, its centre
    crop, and a Preprocessed that places the crop in the image."""
    transform, view = geometry
    if view is None:
        return transform.apply_image(image)
    x, crop = transform.apply_image(view_image(image, view), view.crop)
    resized_size, offset = view_geometry(image.size, view)
    return x, Preprocessed(image.size, resized_size, crop.map_size, offset)


def bounding_boxes(assignment: np.ndarray, num_prototypes: int) -> np.ndarray:
    """(K, 4) int32 XYWH box in pixels of each prototype's pixels in an (H, W) map; zeros for
    prototypes without pixels. One pass over the map (no per-prototype mask)."""
    H, W = assignment.shape
    K = num_prototypes
    a = assignment.astype(np.int64)
    rows = np.zeros(K * H, dtype=bool)  # rows[k * H + y]: prototype k occurs in row y
    rows[(a * H + np.arange(H)[:, None]).ravel()] = True
    cols = np.zeros(K * W, dtype=bool)
    cols[(a * W + np.arange(W)[None, :]).ravel()] = True
    rows, cols = rows.reshape(K, H), cols.reshape(K, W)
    present = rows.any(axis=1)
    y0 = rows.argmax(axis=1)
    y1 = H - 1 - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = W - 1 - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1).astype(np.int32)
    boxes[~present] = 0
    return boxes


def cell_scores(dots: torch.Tensor, info: Preprocessed) -> np.ndarray:
    """(K,) float32 ranking score of the authors' viz_slots.py: the mean of each prototype's
    dots over the valid map cells whose argmax it is, with 1e-6 added to every cell's weight."""
    w, h = info.map_size
    cells = dots[:, :h, :w].float().cpu()  # (K, h, w)
    weights = F.one_hot(cells.argmax(0), cells.shape[0]).permute(2, 0, 1) + 1e-6  # (K, h, w)
    return ((cells * weights).sum((1, 2)) / weights.sum((1, 2))).numpy().astype(np.float32)


def image_slots(
    dots: torch.Tensor,
    slots: torch.Tensor,
    info: Preprocessed,
    stride: int,
    cell_score: bool = False,
) -> ImageSlots:
    """One image: dots (K, h, w) of its padded input, slots (K, D) -> ImageSlots.

    Assignment = argmax of the bilinearly upsampled valid dots at image resolution; a prototype
    with at least one (counted) pixel is a slot; score = mean of its dots over its pixels, or
    with cell_score the authors' score over map cells (cell_scores; the two rank differently).
    """
    assignment, pixels, score = assign_pixels(dots, info, stride)
    if cell_score:
        score = cell_scores(dots, info)
    K = pixels.shape[0]
    present = np.flatnonzero(pixels > 0)
    x0, y0, x1, y1 = counted_region(info, stride)
    boxes = bounding_boxes(assignment[y0:y1, x0:x1], K)[present]
    boxes[:, :2] += np.array([x0, y0], dtype=np.int32)
    embedding = F.normalize(slots.float(), dim=1).cpu().numpy()  # (K, D)
    return ImageSlots(
        assignment=assignment,
        prototype=present.astype(np.int64),
        area=(pixels[present] / float(pixels.sum())).astype(np.float32),
        score=score[present].astype(np.float32),
        bbox=boxes,
        embedding=np.ascontiguousarray(embedding[present], dtype=np.float32),
    )


def encode_images(
    encoder: SlotConEncoder, x: torch.Tensor, infos: list[Preprocessed], cell_score: bool = False
) -> list[ImageSlots]:
    """Images x (B, 3, H', W') of one padded shape, their Preprocessed -> ImageSlots of each,
    in order: the encoder's forward with a valid-cell mask (slots pool only real pixels)."""
    return output_slots(forward(encoder, x, infos), infos, encoder.stride, cell_score)


def forward(encoder: SlotConEncoder, x: torch.Tensor, infos: list[Preprocessed]):
    """The encoder on a batch of one padded shape, with its valid-cell mask: GroupingOutput
    with dots (B, K, h, w) and slots (B, K, D) on the encoder's device."""
    valid = encoder.valid_mask(infos, tuple(x.shape[-2:]))  # (B, 1, h, w)
    return encoder(x, valid)


def output_slots(out, infos: list[Preprocessed], stride: int, cell_score: bool = False):
    """forward's output -> ImageSlots of each image, in order (image_slots)."""
    return [
        image_slots(out.dots[i], out.slots[i], info, stride, cell_score)
        for i, info in enumerate(infos)
    ]


def extract_image(
    encoder: SlotConEncoder, image, geometry: Geometry, cell_score: bool = False
) -> tuple[ImageSlots, Preprocessed]:
    """One RGB image through the build's extraction (preprocess, forward, slot rows): what an
    upload gets, so that its rows are the ones the build would have stored."""
    x, info = preprocess(geometry, image)  # (1, 3, H', W')
    return encode_images(encoder, x, [info], cell_score)[0], info
