"""Build an index: image folder + checkpoint -> index directory (python -m indexing build).

Extraction goes chunk by chunk into `<out>.partial/` (see indexing.build.partial), so an interrupted
build continues with --resume; at the end the chunks are merged into the tables and the faiss
index, and the finished directory is renamed to `<out>`, replacing an existing index only then.
Under torchrun every process extracts its share of the images (rank r takes r, r + N, ...) and
rank 0 merges after a barrier.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from indexing.build.batching import batches_of_one_shape
from indexing.build.collection import assign_image_ids, list_collection
from indexing.build.config import BuildConfig
from indexing.build.extract import Extracted, Extractor, ImageFiles, make_loader
from indexing.build.partial import PartialBuild, chunk_of, is_partial_build, shard
from indexing.build.writer import write_index
from indexing.scores.annotations import load_labels, match_annotations
from indexing.scores.evaluate import scores_dict
from indexing.scores.groundtruth import CocoLabels
from indexing.scores.metrics import ConfusionAccumulator
from indexing.store.directory import is_index_dir, partial_dir, replace_directory, sha256_file
from indexing.store.rows import Geometry
from indexing.store.schema import FORMAT_VERSION, Chunk, manifest_header, model_entry
from indexing.store.views import AUTHORS_VIEW, View
from model import distributed
from model.checkpoint import load_encoder
from model.encoder import SlotConEncoder
from model.outdir import check_output_dir


class _LabelSource:
    """position -> (H, W) uint8 label map, or None for images the annotations do not list."""

    def __init__(self, labels: CocoLabels, annotation_ids: list[int | None]):
        self.labels, self.annotation_ids = labels, annotation_ids

    def __call__(self, position: int) -> np.ndarray | None:
        image_id = self.annotation_ids[position]
        return None if image_id is None else self.labels.label_map(image_id)


class _ChunkBuilder:
    """Collects one chunk's results image by image."""

    def __init__(self, positions: list[int], num_prototypes: int, num_classes: int):
        self.remaining = len(positions)
        self.images: list[tuple[int, int, int, str]] = []  # position, W, H, error
        self.slots: list = []  # (position, ImageSlots) of the readable images
        self.maps: list[bytes] = []  # PNG of each image in self.images (b"" when skipped)
        self.confusion = ConfusionAccumulator(num_prototypes, max(num_classes, 1))
        self.with_labels = num_classes > 0
        self.evaluated = self.unlabelled = 0

    def skip(self, position: int, error: str) -> None:
        self.images.append((position, 0, 0, error))
        self.maps.append(b"")
        self.remaining -= 1

    def add(self, position: int, extracted: Extracted, labels: np.ndarray | None) -> None:
        result = extracted.slots
        H, W = result.assignment.shape
        self.images.append((position, W, H, ""))
        self.maps.append(extracted.png)
        self.slots.append((position, result._replace(assignment=None)))
        if self.with_labels:
            if labels is not None and labels.shape == (H, W):
                self.confusion.update(result.assignment, labels)
                self.evaluated += 1
            else:  # not in the annotations, or a size that differs (EXIF rotation)
                self.unlabelled += 1
        self.remaining -= 1

    def save(self, partial: PartialBuild, rank: int, world: int, j: int, dim: int) -> None:
        confusion = self.confusion.counts if self.with_labels else np.zeros((0, 0), np.int64)
        lengths = [len(m) for m in self.maps]
        chunk = Chunk.from_images(
            self.images, self.slots, lengths, dim, confusion, self.evaluated, self.unlabelled
        )
        partial.save_chunk(rank, world, j, chunk, b"".join(self.maps))


def build_index(cfg: BuildConfig, on_chunk: Callable[[int], None] | None = None) -> Path | None:
    """Build the index described by `cfg`; returns its path (None on ranks other than 0).

    on_chunk(j) is called after chunk j of this process is saved (tests use it to interrupt).
    Raises CheckpointError, FileNotFoundError or ValueError with a clear message on bad input.
    """
    started = time.time()
    joined = not distributed.is_distributed()
    rank_device = distributed.init_from_environment()
    try:
        return _build(cfg, on_chunk, rank_device, started)
    finally:
        if joined:
            distributed.cleanup()


def _build(cfg, on_chunk, rank_device: torch.device, started: float) -> Path | None:
    rank, world = distributed.rank(), distributed.world_size()
    root, out = Path(cfg.images).absolute(), Path(cfg.out).absolute()
    # before any work: replace only an index, and remove only a partial build, of this program
    check_output_dir(out, is_index_dir, "an index")
    check_output_dir(partial_dir(out), is_partial_build, "a partial build of an index")
    device = cfg.device or None
    if distributed.is_distributed() and cfg.device in ("", "cuda"):
        device = str(rank_device)  # one GPU per process
    encoder = load_encoder(cfg.checkpoint, device, input_size=cfg.size, precision=cfg.precision)
    encoder.use_runtime(cfg.runtime)
    paths = list_collection(root, exclude=(out, partial_dir(out)))
    labels = load_labels(cfg.annotations) if cfg.annotations else None
    annotation_ids = match_annotations(paths, labels) if labels is not None else None
    if labels is not None and all(i is None for i in annotation_ids):
        print(
            f"warning: no file of {cfg.annotations[0]} is under {root}; image ids are 1..N "
            "and there is no evaluation",
            file=sys.stderr,
        )
        labels = None
    image_ids = assign_image_ids(paths, annotation_ids)
    checkpoint_sha = sha256_file(cfg.checkpoint)
    settings = {
        "checkpoint_sha256": checkpoint_sha,
        "image_root": str(root),
        "paths_sha256": _digest(paths),
        "image_ids_sha256": _digest(image_ids),
        "annotations": [str(Path(p).absolute()) for p in cfg.annotations] if labels else [],
        "size": encoder.input_size,
        "chunk_size": cfg.chunk_size,
        "processes": world,
        "precision": cfg.precision,
        "runtime": cfg.runtime,
        "view": _view_dict(cfg),
        "format_version": FORMAT_VERSION,  # chunks of another format cannot be resumed
    }
    partial = PartialBuild(partial_dir(out), settings)
    if cfg.resume:
        partial.check_resumable()  # every rank raises the same error on a mismatch
    distributed.barrier()
    if rank == 0:
        partial.prepare(cfg.resume)
    distributed.barrier()
    label_source = _LabelSource(labels, annotation_ids) if labels is not None else None
    _extract_share(cfg, encoder, root, paths, image_ids, label_source, partial, on_chunk)
    distributed.barrier()
    if rank != 0:
        return None
    merged = _merge(partial, len(paths), world, cfg.chunk_size, encoder, labels)
    _write_index(cfg, encoder, merged, paths, image_ids, labels, partial, checkpoint_sha, started)
    check_output_dir(out, is_index_dir, "an index")  # again: something may have appeared since
    replace_directory(partial.index_dir, out)
    partial.remove()
    return out


def _view(cfg: BuildConfig) -> View | None:
    return AUTHORS_VIEW if cfg.authors_crop else None


def _view_dict(cfg: BuildConfig) -> dict | None:
    view = _view(cfg)
    return None if view is None else {"resize": view.resize, "crop": view.crop}


def _digest(values: list) -> str:
    return hashlib.sha256("\n".join(map(str, values)).encode()).hexdigest()


def _extract_share(
    cfg: BuildConfig,
    encoder: SlotConEncoder,
    root: Path,
    paths: list[str],
    image_ids: list[int],
    label_source: _LabelSource | None,
    partial: PartialBuild,
    on_chunk: Callable[[int], None] | None,
) -> None:
    """Extract this process's chunks that are not finished yet, saving each when complete."""
    rank, world = distributed.rank(), distributed.world_size()
    K, D = encoder.num_prototypes, encoder.cfg.dim_out
    num_classes = label_source.labels.num_classes if label_source is not None else 0
    chunks = shard(len(paths), rank, world, cfg.chunk_size)
    todo = [
        j
        for j, positions in enumerate(chunks)
        if not (cfg.resume and partial.is_finished(rank, world, j))
    ]
    done_images = sum(len(c) for j, c in enumerate(chunks) if j not in set(todo))
    if not todo:
        return
    chunk_of = {p: j for j in todo for p in chunks[j]}
    builders = {j: _ChunkBuilder(chunks[j], K, num_classes) for j in todo}
    batches = [
        chunks[j][i : i + cfg.batch_size]
        for j in todo
        for i in range(0, len(chunks[j]), cfg.batch_size)
    ]
    geometry = Geometry(encoder.transform, _view(cfg))
    dataset = ImageFiles(root, paths, geometry, label_source)
    loader = make_loader(dataset, batches, cfg.workers, pin_memory=encoder.device.type == "cuda")
    total = sum(len(c) for c in chunks)
    desc = "extract" if world == 1 else f"extract (process {rank}/{world})"
    collect = _Collector(builders, chunk_of, partial, D, on_chunk)
    extractor = Extractor(encoder, _slot_threads(encoder.device), cfg.authors_crop)
    in_flight: deque = deque()  # (batch, future of its rows): forwards run ahead of the rows
    with tqdm(
        total=total, initial=done_images, desc=desc, unit="img", disable=rank != 0, smoothing=0.1
    ) as bar:
        try:
            for batch in batches_of_one_shape(loader, cfg.batch_size):
                in_flight.append((batch, extractor.submit(batch)))
                while in_flight and (len(in_flight) > extractor.threads or in_flight[0][1].done()):
                    done, future = in_flight.popleft()
                    collect(done, future.result(), bar)
            while in_flight:
                done, future = in_flight.popleft()
                collect(done, future.result(), bar)
        finally:
            extractor.close()


class _Collector:
    """Hands each extracted image to its chunk's builder and saves a chunk once complete."""

    def __init__(self, builders: dict, chunk_of: dict, partial: PartialBuild, dim: int, on_chunk):
        self.builders, self.chunk_of, self.partial = builders, chunk_of, partial
        self.dim, self.on_chunk = dim, on_chunk
        self.rank, self.world = distributed.rank(), distributed.world_size()

    def __call__(self, batch, rows: list[Extracted], bar: tqdm) -> None:
        results = iter(rows)
        for item in batch.items:
            j = self.chunk_of[item.position]
            builder = self.builders[j]
            if item.error:
                bar.write(f"skipping {item.error}", file=sys.stderr)
                builder.skip(item.position, item.error)
            else:
                builder.add(item.position, next(results), item.labels)
            if builder.remaining == 0:
                builder.save(self.partial, self.rank, self.world, j, self.dim)
                del self.builders[j]
                if self.on_chunk is not None:
                    self.on_chunk(j)
        bar.update(len(batch.items))


def _slot_threads(device: torch.device) -> int:
    """Threads making slot rows and maps beside the forward. None on the CPU: the forward keeps
    every core busy, and a thread beside it made a 2-core build 12-20 % slower (docs/BENCHMARKS.md);
    with a GPU the per-image work is the bottleneck (10 % of the network's rate on an H200)."""
    if device.type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def _merge(
    partial: PartialBuild,
    num_images: int,
    world: int,
    chunk_size: int,
    encoder: SlotConEncoder,
    labels: CocoLabels | None,
) -> Chunk:
    """All processes' chunks in one, checked to cover every image exactly once."""
    files = [
        partial.chunk_path(r, world, j)
        for r in range(world)
        for j in range(len(shard(num_images, r, world, chunk_size)))
    ]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise RuntimeError(f"chunks missing after extraction: {', '.join(missing[:5])}")
    num_classes = labels.num_classes if labels is not None else 0
    merged = Chunk.concatenate(
        [Chunk.load(f) for f in files], encoder.cfg.dim_out, (encoder.num_prototypes, num_classes)
    )
    if not np.array_equal(merged.positions, np.arange(num_images)):
        raise RuntimeError("the chunks do not cover the collection exactly once")
    return merged


def _write_index(
    cfg: BuildConfig,
    encoder: SlotConEncoder,
    merged: Chunk,
    paths: list[str],
    image_ids: list[int],
    labels: CocoLabels | None,
    partial: PartialBuild,
    checkpoint_sha: str,
    started: float,
) -> None:
    """Tables, assignment shards, faiss index, evaluation and manifest into the build dir."""
    if not (merged.error == "").any():
        raise ValueError(f"none of the {len(paths)} image files under {cfg.images} is readable")
    vectors = encoder.prototypes.cpu().numpy().astype(np.float32)  # (K, D)
    confusion = merged.confusion if labels is not None else None
    evaluation = None
    if labels is not None:
        evaluation = scores_dict(confusion, vectors, labels.class_names, labels.class_is_thing)
        evaluation.update(
            images_evaluated=int(merged.evaluated),
            images_without_labels=int(merged.unlabelled),
            annotations=[str(Path(p).absolute()) for p in cfg.annotations],
        )
    header = _header(cfg, encoder, labels, checkpoint_sha)
    maps = _chunk_maps(partial, merged, distributed.world_size(), cfg.chunk_size)
    write_index(
        partial.index_dir, merged, paths, image_ids, maps, vectors, header, cfg.index_type,
        confusion, evaluation, started, progress=True,
    )  # fmt: skip


def _header(
    cfg: BuildConfig, encoder: SlotConEncoder, labels: CocoLabels | None, checkpoint_sha: str
) -> dict:
    """The manifest's description of this build's source (indexing.store.schema.manifest_header)."""
    model = model_entry(
        arch=encoder.cfg.arch,
        width=encoder.cfg.width,
        num_prototypes=encoder.num_prototypes,
        dim=encoder.cfg.dim_out,
        input_size=encoder.input_size,
        stride=encoder.stride,
        config=asdict(encoder.cfg),
    )
    return manifest_header(
        checkpoint_path=str(Path(cfg.checkpoint).absolute()),
        checkpoint_sha256=checkpoint_sha,
        model=model,
        image_root=cfg.images,
        annotations=cfg.annotations if labels is not None else (),
        class_names=labels.class_names if labels is not None else (),
        class_is_thing=labels.class_is_thing if labels is not None else (),
        build={
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "processes": distributed.world_size(),
            "device": str(encoder.device),
            "batch_size": cfg.batch_size,
            "chunk_size": cfg.chunk_size,
            "precision": cfg.precision,
            "runtime": cfg.runtime,
            "view": _view_dict(cfg),  # null: whole images
        },
    )


def _chunk_maps(partial: PartialBuild, merged: Chunk, world: int, chunk_size: int):
    """The PNG of each readable image in path order, read from the chunks' .maps files (one
    open file per process's current chunk), so the shards do not depend on the process count."""
    files: dict[tuple[int, int], object] = {}
    try:
        for p, offset, length, error in zip(
            merged.positions, merged.map_offset, merged.map_length, merged.error
        ):
            if error:
                continue
            rank, j = chunk_of(int(p), world, chunk_size)
            if (rank, j) not in files:
                for key in [key for key in files if key[0] == rank]:  # its previous chunk
                    files.pop(key).close()
                files[rank, j] = open(partial.maps_path(rank, world, j), "rb")  # noqa: SIM115
            f = files[rank, j]
            f.seek(int(offset))
            yield f.read(int(length))
    finally:
        for f in files.values():
            f.close()
