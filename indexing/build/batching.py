"""Batches of one padded shape, so that an image's grouping does not depend on its neighbours.

A batch padded to its largest image changes the other images' maps: the convolutions see the
padding, so the cells near it (up to a tenth of an image's pixels with the demo model) change
prototype with the batch's composition. Here decoded images are regrouped by their padded
tensor shape (H', W'), as detection codebases group by aspect ratio, and a batch only ever
stacks images of one shape: each image is padded to its own stride multiple, as when alone.

The regrouping is a pure function of the order and shapes of the images: a bucket is emitted
when it holds `batch_size` images; when more than `max_pending` images wait in partial buckets
(memory bound), the fullest bucket goes (the earliest filled of equal ones); the rest at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from indexing.build.extract import Batch, Item


def stack_items(items: list[Item]) -> Batch:
    """Batch of readable items that share one (3, H', W') shape (ValueError otherwise)."""
    shapes = {tuple(item.x.shape) for item in items}
    if len(shapes) != 1:
        raise ValueError(f"a batch must hold images of one padded shape, got {sorted(shapes)}")
    x = torch.stack([item.x for item in items])  # (B, 3, H', W')
    return Batch(items, x, [item.info for item in items])


def batches_of_one_shape(
    loaded: Iterable[list[Item]], batch_size: int, max_pending: int | None = None
) -> Iterator[Batch]:
    """Regroup loaded items (lists, in any grouping) into Batches of one padded shape.

    An unreadable item becomes a batch of its own with x None, at once. Every item comes out
    exactly once. max_pending defaults to 4 x batch_size images waiting in partial buckets.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    max_pending = 4 * batch_size if max_pending is None else max_pending
    buckets: dict[tuple[int, ...], list[Item]] = {}  # insertion order = first filled first
    pending = 0
    for items in loaded:
        for item in items:
            if item.x is None:
                yield Batch([item], None, [])
                continue
            bucket = buckets.setdefault(tuple(item.x.shape), [])
            bucket.append(item)
            pending += 1
            if len(bucket) == batch_size:
                pending -= len(bucket)
                yield stack_items(buckets.pop(tuple(item.x.shape)))
            elif pending > max_pending:
                fullest = max(buckets, key=lambda shape: len(buckets[shape]))
                pending -= len(buckets[fullest])
                yield stack_items(buckets.pop(fullest))
    for bucket in buckets.values():
        yield stack_items(bucket)
