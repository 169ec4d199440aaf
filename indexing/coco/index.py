"""The COCO val2017 index of `python -m indexing coco`: skipped when up to date, else the
expected time is measured and printed, then `indexing build` runs with the instances JSON
(so that the app's Evaluation tab and the per-prototype purity work).

    build_coco_index(cfg, checkpoint) -> the index directory (skipped when it is up to date)
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from indexing.build.config import BuildConfig
from indexing.coco.config import CocoConfig
from indexing.coco.setup import Say, annotations_file, images_dir
from indexing.store.directory import partial_dir


def index_is_current(out: Path, checkpoint: Path, images: Path) -> bool:
    """True when `out` is a complete index of `images` built with `checkpoint` (same SHA-256)."""
    from indexing.store.directory import read_manifest, sha256_file

    try:
        manifest = read_manifest(out)
    except (OSError, ValueError):
        return False
    same_images = Path(manifest["image_root"]) == images.absolute()
    return same_images and manifest["checkpoint"]["sha256"] == sha256_file(checkpoint)


def build_coco_index(cfg: CocoConfig, checkpoint: Path, say: Say = print) -> Path:
    """Build (or keep) the index of <root>/val2017 with `checkpoint`; returns its directory."""
    images, out = images_dir(cfg.root), cfg.index_dir
    if index_is_current(out, checkpoint, images):
        say(f"index: {out} is up to date (same checkpoint and images)")
        return out
    build = BuildConfig(
        checkpoint=checkpoint,
        images=images,
        out=out,
        annotations=(annotations_file(cfg.root),),
        size=cfg.size,
        batch_size=cfg.batch_size,
        device=cfg.device,
        workers=cfg.workers,
        runtime=cfg.runtime,
        resume=partial_dir(out).is_dir(),  # an interrupted earlier run continues (same settings)
    )
    if cfg.probe_batches:
        say(expected_time(build, cfg.probe_batches))
    from indexing.build.cli import run_build
    from indexing.build.partial import ResumeMismatch

    sys.stdout.flush()
    try:
        run_build(build)
    except ResumeMismatch:  # another checkpoint or size: those chunks cannot be used
        say(f"index: {partial_dir(out)} was made with other settings; building again from zero")
        run_build(dataclasses.replace(build, resume=False))
    return out


def expected_time(build: BuildConfig, batches: int) -> str:
    """The estimate's text: a few batches of the collection timed with the build's model."""
    from indexing.coco.estimate import measure
    from model.checkpoint import load_encoder
    from model.data import list_images

    encoder = load_encoder(build.checkpoint, build.device or None, input_size=build.size)
    encoder.use_runtime(build.runtime)
    paths = list_images(build.images)
    estimate = measure(encoder, paths, len(paths), batches, min(build.batch_size, 8))
    return estimate.describe(len(paths), encoder.device.type)
