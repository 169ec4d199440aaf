"""Batched extraction: image files -> per-image slot rows, embeddings and assignment maps.

Workers of a DataLoader decode and preprocess (and rasterise ground truth); the main process
regroups the images into batches of one padded shape (indexing.build.batching: no image sees
another's padding), runs the encoder with a valid-cell mask (slots pool only real pixels), and
turns each image's dots into slot rows at image resolution (indexing.store.rows).
An unreadable file becomes an item with an error message, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from indexing.scores.annotations import outside_ignored
from indexing.store.rows import Geometry, encode_images, preprocess
from indexing.store.schema import ImageSlots
from model.data import UnreadableImage, load_rgb
from model.encoder import SlotConEncoder
from model.transforms import Preprocessed
from model.workers import exit_with_parent

MAX_PIXELS = 100_000_000  # larger images are skipped (their maps alone would take 200 MB)


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


class Batch(NamedTuple):
    items: list[Item]  # every item of the batch, readable or not
    x: torch.Tensor | None  # (B, 3, H', W') the readable images, one shape (build.batching)
    infos: list[Preprocessed]  # of the readable images, in order


def keep_items(items: list[Item]) -> list[Item]:
    """The DataLoader's collate: items stay separate (indexing.build.batching groups them by
    shape)."""
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


def extract_batch(
    encoder: SlotConEncoder, batch: Batch, cell_score: bool = False
) -> list[ImageSlots]:
    """Run the encoder on a batch; ImageSlots of each readable image, in order (cell_score:
    the authors' ranking score, see indexing.store.rows.image_slots)."""
    if batch.x is None:
        return []
    return encode_images(encoder, batch.x, batch.infos, cell_score)
