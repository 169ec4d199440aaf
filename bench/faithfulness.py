"""Measured effect of each difference from the authors' code and PiCIE's protocol that this
machine can measure (docs/FAITHFULNESS.md).

    python bench/faithfulness.py --checkpoint assets/demo_encoder.pt --images 200 --seed 1

On held-out built-in scenes (exact labels) and on the photos scikit-image ships (mixed sizes),
with one checkpoint on the CPU. Each line compares what the project does now with the other
choice: batch padding (the old build), bf16 against fp32, prototype clustering without pixel
weights (the old Hungarian), PiCIE's pixel clustering (with normalised centroids, and with
PiCIE's unnormalised ones), bicubic against bilinear resizing, and the ranking score of the
index against the authors' cell score. Prints Markdown rows and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import skimage.data  # a dev dependency: the photos its wheel ships
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from indexing.scores.groundtruth import CocoLabels
from indexing.scores.metrics import (
    ConfusionAccumulator,
    hungarian_scores,
    kmeans_cosine,
    majority_vote_scores,
    match_clusters,
    scores_from_mapping,
)
from indexing.scores.picie import cluster_map, fit_centroids, picie_scores
from indexing.store.rows import Geometry, cell_scores, preprocess
from indexing.store.views import AUTHORS_VIEW
from model import SlotConEncoder, assign_pixels, load_encoder
from model.data import load_rgb
from model.scenes import DEFAULT_STYLE, STYLES, find_complete, write_scenes

PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png")
PHOTOS += ("hubble_deep_field.jpg", "motorcycle_left.png", "rocket.jpg")


def run(encoder: SlotConEncoder, image: Image.Image, resample=Image.Resampling.BICUBIC):
    """(dots (K, h, w), Preprocessed) of a whole image, resized with `resample`."""
    x, info = encoder.preprocess(image)  # bicubic
    if resample != Image.Resampling.BICUBIC:
        resized = image.resize(info.resized_size, resample)
        x, _ = encoder.preprocess(resized, min(info.resized_size))  # already at size
    return encoder(x, encoder.valid_mask([info], tuple(x.shape[-2:]))).dots[0], info


def changed(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of pixels whose prototype differs."""
    return 100.0 * float((a != b).mean())


def padded_batch(encoder: SlotConEncoder, images: list[Image.Image]) -> list[np.ndarray]:
    """The old build: every image padded to the batch's largest size, one forward pass."""
    prepared = [encoder.preprocess(image) for image in images]
    H = max(x.shape[-2] for x, _ in prepared)
    W = max(x.shape[-1] for x, _ in prepared)
    x = torch.cat([F.pad(x, (0, W - x.shape[-1], 0, H - x.shape[-2])) for x, _ in prepared])
    infos = [info for _, info in prepared]
    dots = encoder(x, encoder.valid_mask(infos, (H, W))).dots
    return [assign_pixels(dots[i], info, encoder.stride)[0] for i, info in enumerate(infos)]


def unweighted_hungarian(counts: np.ndarray, vectors: np.ndarray):
    """The old prototype clustering: every prototype, dead or busy, weighs one."""
    clusters = kmeans_cosine(vectors, counts.shape[1], seed=0)
    cluster_counts = np.zeros((clusters.max() + 1, counts.shape[1]), dtype=np.int64)
    np.add.at(cluster_counts, clusters, counts)
    return scores_from_mapping(counts, match_clusters(cluster_counts)[clusters])


def top_overlap(ours: np.ndarray, theirs: np.ndarray, k: int = 5) -> tuple[float, float]:
    """(percent of the top-k images per prototype that both scores pick, percent of the
    authors' top-k where the prototype has no pixel); ours (N, K) is nan where the prototype is
    absent (the index has no slot there). Prototypes present in fewer than k images are left out."""
    shares, absent = [], []
    for p in range(ours.shape[1]):
        present = np.flatnonzero(~np.isnan(ours[:, p]))
        if len(present) < k:
            continue
        a = set(present[np.argsort(-ours[present, p], kind="stable")[:k]])
        b = set(np.argsort(-theirs[:, p], kind="stable")[:k])
        shares.append(len(a & b) / k)
        absent.append(len(b - set(present)) / k)
    if not shares:
        return float("nan"), float("nan")
    return 100.0 * float(np.mean(shares)), 100.0 * float(np.mean(absent))


Row = tuple[str, str, str]  # (difference, measured on, effect)


class Scenes(NamedTuple):
    pictures: list  # RGB PIL images
    truths: list[np.ndarray]  # (H, W) class maps
    num_classes: int


class ScenePass(NamedTuple):
    """One fp32 and one bf16 pass over the scenes: their confusions and the fp32 features."""

    confusion: dict[str, ConfusionAccumulator]  # "fp32", "bf16": (K, L) pixel counts
    moved: list[float]  # % of pixels whose prototype differs between the two, per scene
    features: list[torch.Tensor]  # (C, h, w) backbone features of each scene (fp32)
    infos: list  # Preprocessed of each scene


def measure(args: argparse.Namespace) -> list[Row]:
    fp32 = load_encoder(args.checkpoint, "cpu")
    bf16 = load_encoder(args.checkpoint, "cpu", precision="bf16")
    scenes = _scenes(args)
    photos = [load_rgb(Path(skimage.data.__file__).parent / name) for name in PHOTOS]
    alone = [assign_pixels(*run(fp32, p), fp32.stride)[0] for p in photos]
    passed = _scene_pass(fp32, bf16, scenes)
    return [
        _batching_row(fp32, photos, alone),
        *_precision_rows(fp32, bf16, scenes, passed, photos, alone),
        *_picie_rows(fp32, scenes, passed),
        _ranking_row(fp32, scenes),
    ]


def _scenes(args: argparse.Namespace) -> Scenes:
    root = Path(args.scenes or tempfile.mkdtemp(prefix="faithfulness-"))
    ann = find_complete(root, args.images, 192, args.seed, "val", args.style)
    ann = ann or write_scenes(root, args.images, 192, args.seed, "val", style=args.style)
    labels = CocoLabels(ann)
    pictures = [load_rgb(root / "val" / labels.image_info(i).file_name) for i in labels.image_ids]
    truths = [labels.label_map(i) for i in labels.image_ids]
    return Scenes(pictures, truths, len(labels.class_names))


def _batching_row(fp32, photos, alone) -> Row:
    """The build's batching before issue 10: padding to the batch's largest image."""
    moved = [changed(a, b) for a, b in zip(alone, padded_batch(fp32, photos))]
    return (
        "batch of 8 padded to its largest image (fixed)",
        "8 photos, mixed sizes",
        f"{np.mean(moved):.1f} % of pixels change prototype (max {max(moved):.1f} %)",
    )


def _scene_pass(fp32, bf16, scenes: Scenes) -> ScenePass:
    K = fp32.num_prototypes
    confusion = {name: ConfusionAccumulator(K, scenes.num_classes) for name in ("fp32", "bf16")}
    moved, features, infos = [], [], []
    pairs = list(zip(scenes.pictures, scenes.truths))
    for picture, truth in tqdm(pairs, desc="scenes", leave=False):
        dots, info = run(fp32, picture)
        reference = assign_pixels(dots, info, fp32.stride)[0]
        confusion["fp32"].update(reference, truth)
        other = assign_pixels(*run(bf16, picture), bf16.stride)[0]
        confusion["bf16"].update(other, truth)
        moved.append(changed(reference, other))
        x, _ = fp32.preprocess(picture)
        w, h = info.map_size
        features.append(fp32.features(x)[0, :, :h, :w])
        infos.append(info)
    return ScenePass(confusion, moved, features, infos)


def _precision_rows(fp32, bf16, scenes: Scenes, passed: ScenePass, photos, alone) -> list[Row]:
    """bf16 against fp32, the resize filter, and the prototype clustering's weighting."""
    n = len(scenes.pictures)
    photo_moves = [
        changed(a, assign_pixels(*run(bf16, p), bf16.stride)[0]) for a, p in zip(alone, photos)
    ]
    counts = passed.confusion["fp32"].counts
    a = hungarian_scores(counts, fp32.prototypes.numpy())
    b = hungarian_scores(passed.confusion["bf16"].counts, fp32.prototypes.numpy())
    majority_bf16 = majority_vote_scores(passed.confusion["bf16"].counts)
    bilinear = [
        changed(a, assign_pixels(*run(fp32, p, Image.Resampling.BILINEAR), fp32.stride)[0])
        for a, p in zip(alone, photos)
    ]
    old = unweighted_hungarian(counts, fp32.prototypes.numpy())
    dead = int((counts.sum(axis=1) == 0).sum())
    return [
        (
            "bf16 autocast instead of fp32 (fp32 is the default now)",
            f"{n} scenes; 8 photos",
            f"{np.mean(passed.moved):.2f} % of pixels change prototype on scenes, "
            f"{np.mean(photo_moves):.2f} % on photos; Hungarian mIoU {100 * a.miou:.2f} -> "
            f"{100 * b.miou:.2f}, majority "
            f"{100 * majority_vote_scores(counts).miou:.2f} -> {100 * majority_bf16.miou:.2f}",
        ),
        (
            "bicubic resize of whole images (authors' Resize: bilinear)",
            "8 photos (the scenes are not resized)",
            f"{np.mean(bilinear):.2f} % of pixels change prototype (max {max(bilinear):.2f} %)",
        ),
        (
            "prototype clustering unweighted, dead prototypes included (fixed)",
            f"{n} scenes, K {fp32.num_prototypes}, {dead} dead",
            f"Hungarian mIoU {100 * old.miou:.2f} / pixel acc. {100 * old.pixel_accuracy:.2f} "
            f"before, {100 * a.miou:.2f} / {100 * a.pixel_accuracy:.2f} pixel-weighted",
        ),
    ]


def _picie_rows(fp32, scenes: Scenes, passed: ScenePass) -> list[Row]:
    """PiCIE: cosine k-means of the pixel features into one cluster per class, Hungarian over
    the set; with normalised centroids and with PiCIE's unnormalised cluster means."""
    n, num_classes = len(scenes.pictures), scenes.num_classes
    cells = np.concatenate([f.flatten(1).T.numpy() for f in passed.features])
    centroids = fit_centroids(cells, num_classes, seed=0)
    normed = cells / np.linalg.norm(cells, axis=1, keepdims=True)
    members = (normed @ centroids.T).argmax(1)
    means = np.stack([normed[members == c].mean(0) for c in range(len(centroids))])
    normalised = ConfusionAccumulator(num_classes, num_classes)
    unnormalised = ConfusionAccumulator(num_classes, num_classes)
    moved = []
    for f, info, truth in zip(passed.features, passed.infos, scenes.truths):
        m1 = cluster_map(f, info, fp32.stride, centroids)
        m2 = cluster_map(f, info, fp32.stride, means)
        normalised.update(m1, truth)
        unnormalised.update(m2, truth)
        moved.append(changed(m1, m2))
    p1, p2 = picie_scores(normalised.counts), picie_scores(unnormalised.counts)
    a = hungarian_scores(passed.confusion["fp32"].counts, fp32.prototypes.numpy())
    return [
        (
            "PiCIE's pixel clustering beside the prototype clustering (added)",
            f"{n} scenes, {num_classes} clusters",
            f"PiCIE mIoU {100 * p1.miou:.2f} / pixel acc. {100 * p1.pixel_accuracy:.2f}; "
            f"prototypes (Hungarian) {100 * a.miou:.2f} / {100 * a.pixel_accuracy:.2f}",
        ),
        (
            "normalised centroids (PiCIE's eval: unnormalised cluster means)",
            f"{n} scenes",
            f"{np.mean(moved):.2f} % of pixels change cluster; mIoU {100 * p1.miou:.2f} vs "
            f"{100 * p2.miou:.2f}",
        ),
    ]


def _ranking_row(fp32, scenes: Scenes) -> Row:
    """The top-5 images per prototype at the authors' crop: our slot score against theirs."""
    geometry = Geometry(fp32.transform, AUTHORS_VIEW)
    n, K = len(scenes.pictures), fp32.num_prototypes
    ours, theirs = np.full((n, K), np.nan), np.zeros((n, K))
    for i, picture in enumerate(scenes.pictures):
        x, info = preprocess(geometry, picture)
        dots = fp32(x, torch.ones(1, 1, *info.map_size[::-1], dtype=torch.bool)).dots[0]
        _, pixels, score = assign_pixels(dots, info, fp32.stride)
        ours[i, pixels > 0] = score[pixels > 0]
        theirs[i] = cell_scores(dots, info)
    return (
        "ranking score of whole-image indexes: mean upsampled dots over the slot's pixels "
        "(authors, and --authors-crop: over argmax cells, +1e-6 on every cell)",
        f"{n} scenes at the authors' crop",
        "{:.1f} % of the top-5 images per prototype in common; {:.1f} % of the authors' "
        "top-5 are images without a pixel of the prototype".format(*top_overlap(ours, theirs)),
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="encoder (the demo's: assets/...)")
    p.add_argument("--images", type=int, default=200, help="held-out scenes (200: a few min)")
    p.add_argument("--seed", type=int, default=1, help="scene seed; the demo trained on 0")
    p.add_argument("--scenes", default="", help="where to keep the scenes (default: temp)")
    p.add_argument(
        "--style",
        choices=sorted(STYLES),
        default=DEFAULT_STYLE,
        help="scene style (model.scenes); docs/FAITHFULNESS.md's figures: hard",
    )
    p.add_argument("--json", type=Path, default=Path("faithfulness.json"), help="write rows")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rows = measure(args)
    print("| difference | measured on | effect |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    records = [dict(zip(("difference", "measured_on", "effect"), row)) for row in rows]
    args.json.write_text(json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
