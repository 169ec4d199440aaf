"""An index build split by stage, beside the network's own speed (bench/index_build.py --stages).

Each stage runs alone, one after the other, on the same images in one process (torch's default
threads), so that each figure is that stage's own cost:

    decode        model.data.load_rgb of every file
    resize        the build's preprocessing (indexing.store.rows.preprocess) and the regrouping
                  into batches of one padded shape (indexing.build.batching)
    forward       the encoder on those batches: backbone, projector, grouping (dots and slots)
    group         each image's slot rows at image resolution (indexing.store.rows.image_slots:
                  assignment map, pixel counts, scores, boxes, embeddings)
    write         assignment PNGs (indexing.store.assignments.encode_assignment) and the index's
                  tables and faiss index (indexing.build.writer.write_index)

"network only" is the forward stage's images/s: the encoder on pre-decoded, pre-resized batches
of the build's own shapes. The real build (`indexing.build_index`, decode in worker processes)
is timed separately by the caller; its images/s over the network's is the build's efficiency.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from indexing.build.batching import batches_of_one_shape
from indexing.build.extract import Item
from indexing.build.writer import write_index
from indexing.store.assignments import encode_assignment
from indexing.store.rows import Geometry, image_slots, preprocess
from indexing.store.schema import Chunk, manifest_header
from model.checkpoint import load_encoder
from model.data import list_images, load_rgb

STAGES = ("decode", "resize", "forward", "group", "write")


def stage_split(
    images: Path,
    checkpoint: Path,
    batch_size: int,
    device: str = "cpu",
    precision: str = "fp32",
    runtime: str = "eager",
) -> dict:
    """Seconds of each stage over the images of the folder, and the network-only images/s."""
    encoder = load_encoder(checkpoint, device or None, precision=precision)
    if runtime != "eager":  # only when asked: trees from before use_runtime are timed too
        encoder.use_runtime(runtime)
    paths = list_images(images)
    seconds = dict.fromkeys(STAGES, 0.0)

    start = time.perf_counter()
    decoded = [load_rgb(p) for p in paths]
    seconds["decode"] = time.perf_counter() - start

    start = time.perf_counter()
    geometry = Geometry(encoder.transform)
    items = []
    for position, image in enumerate(decoded):
        x, info = preprocess(geometry, image)
        items.append(Item(position, x[0], info, "", None))
    batches = list(batches_of_one_shape([items], batch_size))
    seconds["resize"] = time.perf_counter() - start

    encoder(batches[0].x[:1], encoder.valid_mask(batches[0].infos[:1], batches[0].x.shape[-2:]))
    outputs = []
    start = time.perf_counter()
    for batch in batches:
        out = encoder(batch.x, encoder.valid_mask(batch.infos, tuple(batch.x.shape[-2:])))
        outputs.append((batch, out.dots, out.slots))  # on the device, as the build keeps them
    _synchronize(encoder.device)
    seconds["forward"] = time.perf_counter() - start

    start = time.perf_counter()
    rows = []
    for batch, dots, slots in outputs:
        for i, (item, info) in enumerate(zip(batch.items, batch.infos)):
            rows.append((item.position, image_slots(dots[i], slots[i], info, encoder.stride)))
    seconds["group"] = time.perf_counter() - start

    start = time.perf_counter()
    rows.sort(key=lambda row: row[0])
    maps = [encode_assignment(r.assignment, encoder.num_prototypes) for _, r in rows]
    _write(encoder, paths, rows, maps)
    seconds["write"] = time.perf_counter() - start

    n = len(paths)
    return {
        "images": n,
        "shapes": len({tuple(b.x.shape[-2:]) for b in batches}),
        "batches": len(batches),
        "seconds": seconds,
        "ms_per_image": {k: 1000 * v / n for k, v in seconds.items()},
        "network_images_per_second": n / seconds["forward"],
        "sequential_images_per_second": n / sum(seconds.values()),
    }


def _write(encoder, paths, rows, maps) -> None:
    """The writer's work on these rows: tables, shards and faiss into a scratch directory."""
    sizes = [(p, r.assignment.shape[1], r.assignment.shape[0], "") for p, r in rows]
    chunk = Chunk.from_images(
        sizes, rows, [len(m) for m in maps], encoder.cfg.dim_out, np.zeros((0, 0), np.int64)
    )
    header = manifest_header(
        checkpoint_path="bench", checkpoint_sha256="", model={}, image_root="bench"
    )
    vectors = encoder.prototypes.cpu().numpy().astype(np.float32)
    relative = [str(p) for p in paths]
    with tempfile.TemporaryDirectory(prefix="stages-") as target:
        write_index(
            Path(target), chunk, relative, list(range(1, len(paths) + 1)), maps, vectors, header
        )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
