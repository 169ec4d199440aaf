"""Batched extraction: image files -> per-image slot rows, embeddings and assignment maps.

Workers of a DataLoader decode and preprocess (and rasterise ground truth); the main process
regroups the images into batches of one padded shape (indexing.build.batching: no image sees
another's padding), runs the encoder with a valid-cell mask (slots pool only real pixels), and
turns each image's dots into slot rows at image resolution (indexing.store.rows).
An unreadable file becomes an item with an error message, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from indexing.scores.annotations import outside_ignored
from indexing.store.assignments import encode_assignment
from indexing.store.rows import Geometry, forward, output_slots, preprocess
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


class Extracted(NamedTuple):
    slots: ImageSlots  # with its assignment map
    png: bytes  # the map, encoded (indexing.store.assignments.encode_assignment)


class Extractor:
    """The forward in the caller's thread; slot rows and PNG maps of a batch in a pool of
    threads (their torch, numpy and zlib work runs outside the GIL), so that the next batch's
    forward starts while they are made, or in the caller's thread too when threads is 0.
    `submit` returns a future of [Extracted], one per readable image."""

    def __init__(self, encoder: SlotConEncoder, threads: int, cell_score: bool = False):
        self.encoder, self.cell_score, self.threads = encoder, cell_score, threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="slots") if threads else None

    def submit(self, batch: Batch) -> Future:
        out = forward(self.encoder, batch.x, batch.infos) if batch.x is not None else None
        if self.pool is not None:
            return self.pool.submit(self._rows, out, batch.infos)
        done: Future = Future()
        done.set_result(self._rows(out, batch.infos))
        return done

    def _rows(self, out, infos: list[Preprocessed]) -> list[Extracted]:
        if out is None:
            return []
        K, stride = self.encoder.num_prototypes, self.encoder.stride
        rows = output_slots(out, infos, stride, self.cell_score)
        return [Extracted(r, encode_assignment(r.assignment, K)) for r in rows]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
