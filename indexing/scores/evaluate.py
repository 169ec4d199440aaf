"""Unsupervised segmentation scores of an index (python -m indexing evaluate).

Two protocols, both scored by indexing.scores.metrics (Hungarian matching of pixel-weighted
prototype clusters, and majority vote):
- "index": the stored image-resolution assignment maps against label maps of COCO-format
  annotations (CocoLabels), over every indexed image the annotations list;
- "cocostuff27" (indexing.scores.protocol; docs/COCOSTUFF27.md, the PiCIE / STEGO protocol
  behind SlotCon's 18.26 / 42.36): the curated val2017 images at 320 px centre crops, 27 coarse
  classes, scored also with PiCIE's own clustering of pixel features ("picie").
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexing.scores.annotations import match_annotations, outside_ignored
from indexing.scores.groundtruth import CocoLabels
from indexing.scores.metrics import ConfusionAccumulator, hungarian_scores, majority_vote_scores
from indexing.store.views import View, crop_region

MAPPINGS = ("picie", "hungarian", "majority")  # in tables: those present in a result


def scores_dict(
    counts: np.ndarray,
    prototype_vectors: np.ndarray | None,
    class_names: Sequence[str],
    class_is_thing: Sequence[bool] | None = None,
) -> dict:
    """{"hungarian": ..., "majority": ..., "class_names": [...]} from a (K, L) histogram; each
    mapping as SegmentationScores.to_dict (miou, pixel_accuracy, per_class_iou, mapping ...)."""
    return {
        "hungarian": hungarian_scores(counts, prototype_vectors).to_dict(
            class_names, class_is_thing
        ),
        "majority": majority_vote_scores(counts).to_dict(class_names, class_is_thing),
        "class_names": list(class_names),
    }


def index_confusion(index, labels: CocoLabels) -> tuple[np.ndarray, int, int]:
    """(K, L) pixel histogram of the index's assignment maps against `labels`, the number of
    images counted, and of indexed images without a usable label map (not listed, or of
    another size). An index built with a crop view counts the crop's pixels only."""
    view = (index.manifest.get("build") or {}).get("view")
    view = View(**view) if view else None
    stride = index.manifest["model"]["stride"] if view else 0
    images = index.images_table()
    matched = match_annotations(list(images["path"]), labels)
    acc = ConfusionAccumulator(index.num_prototypes, labels.num_classes)
    evaluated = unlabelled = 0
    rows = zip(images["image_id"], images["width"], images["height"], matched)
    for image_id, W, H, annotation_id in tqdm(rows, total=len(images), desc="evaluate", unit="img"):
        if annotation_id is None:
            unlabelled += 1
            continue
        label_map = labels.label_map(annotation_id)
        if label_map.shape != (H, W):
            unlabelled += 1
            continue
        if view is not None:
            label_map = outside_ignored(label_map, crop_region((W, H), view, stride))
        acc.update(index.assignment(int(image_id)), label_map)
        evaluated += 1
    return acc.counts, evaluated, unlabelled


def format_table(result: dict) -> str:
    """The scores of each mapping as a small text table, in percent."""
    header = (
        f"{'mapping':<10} {'mIoU':>7} {'pixel acc.':>11} {'things mIoU':>12} {'stuff mIoU':>11}"
    )
    lines = [header]
    for name in (m for m in MAPPINGS if m in result):
        s = result[name]
        cells = [s["miou"], s["pixel_accuracy"], s.get("things_miou"), s.get("stuff_miou")]
        text = [f"{100 * v:.2f}" if v is not None else "-" for v in cells]
        lines.append(f"{name:<10} {text[0]:>7} {text[1]:>11} {text[2]:>12} {text[3]:>11}")
    return "\n".join(lines)


def write_csv(result: dict, path: str | Path, class_is_thing: Sequence[bool] | None) -> None:
    """One row per class: class, is_thing, then [picie_iou,] hungarian_iou, majority_iou
    (fractions, "" = nan)."""
    names = result["class_names"]
    flags = list(class_is_thing) if class_is_thing else [""] * len(names)
    mappings = [m for m in MAPPINGS if m in result]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "is_thing", *(f"{m}_iou" for m in mappings)])
        for name, is_thing in zip(names, flags):
            ious = [result[m]["per_class_iou"][name] for m in mappings]
            writer.writerow([name, is_thing, *("" if v is None else f"{v:.6f}" for v in ious)])
