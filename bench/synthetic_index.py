"""A synthetic index of any size in the real on-disk format (bench/index_scale.py measures it).

No model runs: every number is drawn, and the files are written by
indexing.build.writer.write_index, the same code as `python -m indexing build`, so
ConceptIndex.open, `python -m indexing evaluate` and `python app.py` open the result like any
other index.

- Images: a pool of placeholder images ("layouts": a few grey regions each, 64-96 px) is drawn
  once; every indexed image is a hard link to one of them under <images>/NNNN/NNNNNNN.png (1,000
  a folder), so a million images cost directory entries, not a million files' worth of disk.
- Segments: each image's regions get distinct prototypes (a Zipf-like popularity), so its
  assignment map, areas and boxes agree with the slots table.
- Embeddings: around their prototype, on an 8-dimensional random subspace per prototype plus a
  little isotropic noise (clusters of cosine ~0.9 to the centre, low intrinsic dimension as
  learned features have; isotropic 32-d noise would make every neighbour equally far).
- Annotations: a COCO instances JSON for the first `annotated` images; each prototype has a
  home class that labels 85% of its regions (purity ~0.85), for `indexing evaluate`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from indexing.build.writer import write_index
from indexing.scores.evaluate import scores_dict
from indexing.scores.metrics import ConfusionAccumulator
from indexing.store.assignments import encode_assignment
from indexing.store.directory import is_index_dir, partial_dir, replace_directory
from indexing.store.rows import bounding_boxes
from indexing.store.schema import Chunk, manifest_header, model_entry
from model.outdir import check_output_dir

SIZES = ((96, 64), (64, 96), (80, 80))  # (W, H) of the placeholder images
MAX_REGIONS = 12  # segments of one image at most
PER_FOLDER = 1000  # image links per folder


@dataclass(frozen=True)
class SyntheticConfig:
    slots: int  # S, segments in the index
    dim: int = 32  # D, as the demo model
    prototypes: int = 32  # K, as the demo model
    classes: int = 8  # C, annotated classes (half things, half stuff)
    latent: int = 8  # intrinsic dimension of a prototype's cluster
    spread: float = 0.35  # cluster radius around its prototype (cosine ~0.9 to it)
    mean_slots: float = 8.0  # segments per image (ImageNet: ~10M over 1.28M images)
    layouts: int = 240  # distinct placeholder images
    annotated: int = 500  # images in the annotations JSON (evaluate reads only those)
    index_type: str = "auto"  # auto | flat | ivf (indexing.store.faiss_index)
    seed: int = 0


@dataclass(frozen=True)
class Layout:
    regions: np.ndarray  # (H, W) uint8 region index 0..n-1
    area: np.ndarray  # (n,) float32 fraction of the image
    bbox: np.ndarray  # (n, 4) int32 XYWH
    file: Path  # the placeholder image


def make_layouts(folder: Path, count: int, rng: np.random.Generator) -> list[Layout]:
    """`count` layouts, region counts 1..MAX_REGIONS in turn: anisotropic Voronoi cells, each
    drawn as a grey level with a little texture."""
    folder.mkdir(parents=True, exist_ok=True)
    layouts = []
    for i in range(count):
        n = 1 + i % MAX_REGIONS
        W, H = SIZES[i % len(SIZES)]
        while True:  # Voronoi cells of n random seeds; redraw until none is empty
            seeds = rng.uniform(0, 1, (n, 2)) * (W, H)
            scale = rng.uniform(0.5, 2.0, (n, 2))
            ys, xs = np.mgrid[0:H, 0:W]
            dist = ((xs[None] - seeds[:, 0, None, None]) * scale[:, 0, None, None]) ** 2 + (
                (ys[None] - seeds[:, 1, None, None]) * scale[:, 1, None, None]
            ) ** 2  # (n, H, W)
            regions = dist.argmin(axis=0).astype(np.uint8)
            if len(np.unique(regions)) == n:
                break
        pixels = np.bincount(regions.ravel(), minlength=n)
        bbox = bounding_boxes(regions, n).astype(np.int32)  # as the build computes them
        grey = rng.integers(40, 220, n)[regions] + rng.integers(-12, 13, (H, W))
        file = folder / f"{i:04d}.png"
        Image.fromarray(grey.clip(0, 255).astype(np.uint8)).convert("RGB").save(file)
        layouts.append(Layout(regions, (pixels / (W * H)).astype(np.float32), bbox, file))
    return layouts


def _image_layouts(cfg: SyntheticConfig, layouts: list[Layout], rng) -> np.ndarray:
    """Layout index of each image, its region counts summing to exactly cfg.slots."""
    by_count = {}
    for i, layout in enumerate(layouts):
        by_count.setdefault(len(layout.area), []).append(i)
    cap = min(MAX_REGIONS, cfg.prototypes)
    draws = int(cfg.slots / cfg.mean_slots * 1.3) + 8
    counts = np.clip(np.rint(rng.normal(cfg.mean_slots, 2.5, draws)), 1, cap).astype(np.int64)
    while counts.sum() < cfg.slots:  # a mean far above the cap: more images
        counts = np.concatenate([counts, counts])
    total = np.cumsum(counts)
    n = int(np.searchsorted(total, cfg.slots)) + 1
    counts = counts[:n]
    counts[-1] -= int(total[n - 1] - cfg.slots)  # the last image takes what is left
    chosen = np.empty(n, np.int64)
    for c in np.unique(counts):
        where = np.flatnonzero(counts == c)
        chosen[where] = rng.choice(by_count[int(c)], size=len(where))
    return chosen


def _distinct_prototypes(counts: np.ndarray, K: int, rng) -> list[np.ndarray]:
    """For each image, `count` distinct prototypes (Gumbel top-k over a Zipf-like popularity)."""
    popularity = np.log(1.0 / np.sqrt(1 + rng.permutation(K)))
    chosen = []
    for start in range(0, len(counts), 65536):
        block = counts[start : start + 65536]
        keys = popularity + rng.gumbel(size=(len(block), K))
        order = np.argsort(-keys, axis=1)
        chosen += [order[i, :c] for i, c in enumerate(block)]
    return chosen


def _embeddings(prototype: np.ndarray, cfg: SyntheticConfig, rng) -> tuple[np.ndarray, np.ndarray]:
    """(S, D) float32 unit vectors around their prototypes (see the module docstring), and the
    (K, D) prototype vectors."""
    K, D, L = cfg.prototypes, cfg.dim, cfg.latent
    centres = rng.standard_normal((K, D)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.standard_normal((K, D, L)).astype(np.float32) * (cfg.spread / np.sqrt(L))
    out = np.empty((len(prototype), D), np.float32)
    for start in range(0, len(prototype), 1 << 18):
        p = prototype[start : start + (1 << 18)]
        z = rng.standard_normal((len(p), L)).astype(np.float32)
        x = centres[p] + np.einsum("ndl,nl->nd", bases[p], z)
        x += 0.03 * rng.standard_normal(x.shape).astype(np.float32)
        out[start : start + len(p)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, centres


def write_synthetic_index(cfg: SyntheticConfig, out: Path, images: Path | None = None) -> Path:
    """Write the index at `out` (replacing only an earlier index) and its placeholder images at
    `images` (default `<out>.images`, replaced); returns `out`."""
    started = time.time()
    out = Path(out).absolute()
    images = Path(images or out.with_name(out.name + ".images")).absolute()
    check_output_dir(out, is_index_dir, "an index")
    if cfg.slots < 1 or cfg.prototypes < 1 or cfg.dim < 1 or cfg.layouts < MAX_REGIONS:
        raise ValueError(f"slots, prototypes and dim must be >= 1, layouts >= {MAX_REGIONS}")
    rng = np.random.default_rng(cfg.seed)
    shutil.rmtree(images, ignore_errors=True)
    layouts = make_layouts(images / "layouts", cfg.layouts, rng)
    chosen = _image_layouts(cfg, layouts, rng)
    counts = np.array([len(layouts[i].area) for i in chosen])
    luts = [p.astype(np.int16) for p in _distinct_prototypes(counts, cfg.prototypes, rng)]
    n_images = len(chosen)
    paths = [f"{i // PER_FOLDER:04d}/{i:07d}.png" for i in range(n_images)]
    # slots in (image, prototype) order, as a build writes them
    order = [np.argsort(lut, kind="stable") for lut in luts]  # regions by prototype
    prototype = np.concatenate([lut[o] for lut, o in zip(luts, order)]).astype(np.int64)
    embedding, centres = _embeddings(prototype, cfg, rng)
    merged = Chunk(
        positions=np.arange(n_images, dtype=np.int64),
        width=np.array([layouts[c].regions.shape[1] for c in chosen], np.int32),
        height=np.array([layouts[c].regions.shape[0] for c in chosen], np.int32),
        error=np.full(n_images, "", dtype="<U1"),
        map_offset=np.zeros(n_images, np.int64),  # (chunk files only)
        map_length=np.zeros(n_images, np.int64),
        slot_position=np.repeat(np.arange(n_images, dtype=np.int64), counts),
        prototype=prototype,
        area=np.concatenate([layouts[c].area[o] for c, o in zip(chosen, order)]),
        score=(0.9 * rng.beta(5, 2, len(prototype))).astype(np.float32),
        bbox=np.concatenate([layouts[c].bbox[o] for c, o in zip(chosen, order)]),
        embedding=embedding,
        confusion=np.zeros((0, 0), np.int64),
        evaluated=np.int64(0),
        unlabelled=np.int64(0),
    )
    del order, embedding
    labels = _Annotations(cfg, rng)
    for i in range(min(cfg.annotated, n_images)):
        labels.add(i + 1, paths[i], layouts[chosen[i]], luts[i])
    annotations = labels.save(images / "annotations.json")
    evaluation = scores_dict(labels.confusion.counts, centres, labels.names, labels.is_thing)
    evaluation.update(
        images_evaluated=labels.count,
        images_without_labels=n_images - labels.count,
        annotations=[str(annotations)],
    )

    def maps():
        """Link each image to its layout and yield its assignment PNG, in path order."""
        for i in tqdm(range(n_images), desc="images", unit="img", smoothing=0.05):
            layout = layouts[chosen[i]]
            if i % PER_FOLDER == 0:
                (images / paths[i]).parent.mkdir()
            _link(layout.file, images / paths[i])
            yield encode_assignment(luts[i][layout.regions], cfg.prototypes)

    header = _header(cfg, images, annotations, labels)
    target = partial_dir(out)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    ids = list(range(1, n_images + 1))
    confusion = labels.confusion.counts
    write_index(
        target, merged, paths, ids, maps(), centres, header, cfg.index_type, confusion,
        evaluation, started, progress=True,
    )  # fmt: skip
    replace_directory(target, out)
    return out


def _header(cfg: SyntheticConfig, images: Path, annotations: Path, labels: _Annotations) -> dict:
    """The manifest's description of the synthetic source (no checkpoint: a digest of cfg)."""
    digest = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()
    return manifest_header(
        checkpoint_path="synthetic (bench/synthetic_index.py)",
        checkpoint_sha256=digest,
        model=model_entry(
            arch="synthetic",
            width=1,
            num_prototypes=cfg.prototypes,
            dim=cfg.dim,
            input_size=64,
            stride=8,
            config={},
        ),
        image_root=images,
        annotations=[annotations],
        class_names=labels.names,
        class_is_thing=labels.is_thing,
        build={
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "processes": 1,
            "device": "cpu",
            "synthetic": asdict(cfg),
        },
    )


class _Annotations:
    """A COCO instances JSON of some images, and the (K, L) confusion of their maps."""

    def __init__(self, cfg: SyntheticConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.names = [f"class {c}" for c in range(cfg.classes)]
        self.is_thing = [c % 2 == 0 for c in range(cfg.classes)]
        self.home = np.arange(cfg.prototypes) % cfg.classes  # each prototype's main class
        self.confusion = ConfusionAccumulator(cfg.prototypes, cfg.classes)
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.count = 0

    def add(self, image_id: int, path: str, layout: Layout, lut: np.ndarray) -> None:
        """One image: each region labelled with its prototype's home class (85%) or another."""
        H, W = layout.regions.shape
        n = len(lut)
        classes = np.where(
            self.rng.random(n) < 0.85, self.home[lut], self.rng.integers(0, self.cfg.classes, n)
        )
        self.images.append({"id": image_id, "file_name": path, "width": W, "height": H})
        for r in range(n):
            mask = np.asfortranarray(layout.regions == r, dtype=np.uint8)
            rle = mask_utils.encode(mask)
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(classes[r]) + 1,
                    "segmentation": {"size": [H, W], "counts": rle["counts"].decode()},
                    "area": float(layout.area[r] * H * W),
                    "bbox": [float(v) for v in layout.bbox[r]],
                    "iscrowd": 0,
                }
            )
        self.confusion.update(lut[layout.regions], classes.astype(np.uint8)[layout.regions])
        self.count += 1

    def save(self, path: Path) -> Path:
        categories = [
            {"id": c + 1, "name": name, "isthing": int(thing)}
            for c, (name, thing) in enumerate(zip(self.names, self.is_thing))
        ]
        coco = {"images": self.images, "annotations": self.annotations, "categories": categories}
        path.write_text(json.dumps(coco))
        return path


def _link(source: Path, target: Path) -> None:
    """A hard link (a directory entry, no data); a copy where links are not possible."""
    try:
        os.link(source, target)
    except OSError:  # another file system, or the link limit of one file
        shutil.copyfile(source, target)
