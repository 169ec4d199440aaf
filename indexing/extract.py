"""Batched extraction: image files -> per-image slot rows, embeddings and assignment maps.

Workers of a DataLoader decode and preprocess (and rasterise ground truth); the main process
regroups the images into batches of one padded shape (indexing.batching: no image sees another's
padding), runs the encoder with a valid-cell mask (slots pool only real pixels), and turns each
image's dots into slot rows at image resolution (model.assign_pixels).
An unreadable file becomes an item with an error message, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from indexing.cocostuff import IGNORE_INDEX
from indexing.schema import ImageSlots
from indexing.views import View, view_geometry, view_image
from model.data import UnreadableImage, load_rgb
from model.encoder import SlotConEncoder
from model.transforms import ImageTransform, Preprocessed, assign_pixels, counted_region
from model.workers import exit_with_parent

MAX_PIXELS = 100_000_000  # larger images are skipped (their maps alone would take 200 MB)


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


class Item(NamedTuple):
    position: int  # index of the image in the collection's sorted path list
    x: torch.Tensor | None  # (3, H', W') normalised, padded to the stride; None if unreadable
    info: Preprocessed | None
    error: str  # "" or why the file was skipped
    labels: np.ndarray | None  # (H, W) uint8 ground truth, 255 unlabelled; None without


class ImageFiles(Dataset):
    """Item i of `positions`: the decoded, preprocessed image (and its label map)."""

    def __init__(
        self,
        root: Path,
        paths: Sequence[str],
        geometry: Geometry,
        labels: Callable[[int], np.ndarray | None] | None = None,
    ):
        self.root, self.paths, self.geometry, self.labels = Path(root), paths, geometry, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> Item:
        try:
            image = load_rgb(self.root / self.paths[position], max_pixels=MAX_PIXELS)
        except UnreadableImage as error:
            return Item(position, None, None, str(error), None)
        except Exception as error:  # a vanished file, a broken EXIF block ...:
            # one bad file must not stop the build; it is reported in the manifest
            reason = f"{self.paths[position]}: {type(error).__name__}: {error}"
            return Item(position, None, None, reason, None)
        x, info = preprocess(self.geometry, image)
        labels = self.labels(position) if self.labels is not None else None
        if labels is not None and self.geometry.view is not None:
            labels = outside_ignored(labels, self.geometry.transform.counted_region(info))
        return Item(position, x[0], info, "", labels)


def crop_region(image_size: tuple[int, int], view: View, stride: int) -> tuple[int, ...]:
    """(x0, y0, x1, y1): the pixels of a (W, H) image that the view's crop covers, as the
    extraction counts them (model.counted_region)."""
    resized_size, offset = view_geometry(image_size, view)
    cells = math.ceil(view.crop / stride)
    return counted_region(Preprocessed(image_size, resized_size, (cells, cells), offset), stride)


def outside_ignored(labels: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of (H, W) labels with the pixels outside region (x0, y0, x1, y1) unlabelled."""
    x0, y0, x1, y1 = region
    out = np.full_like(labels, IGNORE_INDEX)
    out[y0:y1, x0:x1] = labels[y0:y1, x0:x1]
    return out


class Batch(NamedTuple):
    items: list[Item]  # every item of the batch, readable or not
    x: torch.Tensor | None  # (B, 3, H', W') the readable images (indexing.batching: one shape)
    infos: list[Preprocessed]  # of the readable images, in order


def keep_items(items: list[Item]) -> list[Item]:
    """The DataLoader's collate: items stay separate (indexing.batching groups them by shape)."""
    return items


def make_loader(
    dataset: ImageFiles, batches: list[list[int]], workers: int, pin_memory: bool
) -> DataLoader:
    """A DataLoader yielding lists of Items for the given lists of positions, in order."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=keep_items,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
        worker_init_fn=exit_with_parent if workers > 0 else None,
    )


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


def extract_batch(
    encoder: SlotConEncoder, batch: Batch, cell_score: bool = False
) -> list[ImageSlots]:
    """Run the encoder on a batch; ImageSlots of each readable image, in order (cell_score:
    the authors' ranking score, see image_slots)."""
    if batch.x is None:
        return []
    valid = encoder.valid_mask(batch.infos, tuple(batch.x.shape[-2:]))  # (B, 1, h, w)
    out = encoder(batch.x, valid)  # dots (B, K, h, w), slots (B, K, D)
    return [
        image_slots(out.dots[i], out.slots[i], info, encoder.stride, cell_score)
        for i, info in enumerate(batch.infos)
    ]


def extract_image(
    encoder: SlotConEncoder, image, geometry: Geometry, cell_score: bool = False
) -> tuple[ImageSlots, Preprocessed]:
    """One RGB image through the build's extraction (preprocess, forward, slot rows): what an
    upload gets, so that its rows are the ones the build would have stored."""
    x, info = preprocess(geometry, image)  # (1, 3, H', W')
    batch = Batch([Item(0, x[0], info, "", None)], x, [info])
    return extract_batch(encoder, batch, cell_score=cell_score)[0], info
