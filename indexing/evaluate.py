"""Unsupervised segmentation scores of an index (python -m indexing evaluate).

Two protocols, both scored by indexing.evaluation (Hungarian matching with the prototype
vectors, and majority vote):
- "index": the stored image-resolution assignment maps against label maps of COCO-format
  annotations (CocoLabels), over every indexed image the annotations list;
- "cocostuff27" (SLOTCON.md, the PiCIE / STEGO protocol behind SlotCon's 18.26 / 42.36): the
  curated val2017 images, shorter side 320 + centre crop 320 for image and labels (labels
  nearest), dots recomputed at 320 with the checkpoint and upsampled bilinearly to 320 x 320,
  27 coarse COCO-Stuff classes.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from indexing.collection import match_annotations
from indexing.evaluation import ConfusionAccumulator, hungarian_scores, majority_vote_scores
from indexing.groundtruth import CocoLabels, read_stuffthing_png
from model.data import UnreadableImage, load_rgb
from model.encoder import SlotConEncoder, assign_pixels

CURATED_LIST = Path(__file__).parent / "data" / "cocostuff27_val2017_curated.txt"
PROTOCOL_SIZE = 320  # shorter side and centre-crop side of the COCO-Stuff-27 protocol
MAPPINGS = ("hungarian", "majority")


def scores_dict(
    counts: np.ndarray,
    prototype_vectors: np.ndarray | None,
    class_names: Sequence[str],
    class_is_thing: Sequence[bool] | None = None,
) -> dict:
    """{"hungarian": ..., "majority": ..., "class_names": [...]} from a (K, C) histogram; each
    mapping as SegmentationScores.to_dict (miou, pixel_accuracy, per_class_iou, mapping ...)."""
    return {
        "hungarian": hungarian_scores(counts, prototype_vectors).to_dict(
            class_names, class_is_thing
        ),
        "majority": majority_vote_scores(counts).to_dict(class_names, class_is_thing),
        "class_names": list(class_names),
    }


def index_confusion(index, labels: CocoLabels) -> tuple[np.ndarray, int, int]:
    """(K, C) pixel histogram of the index's assignment maps against `labels`, the number of
    images counted, and of indexed images without a usable label map (not listed, or of
    another size)."""
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
        acc.update(index.assignment(int(image_id)), label_map)
        evaluated += 1
    return acc.counts, evaluated, unlabelled


def read_curated(path: str | Path = CURATED_LIST) -> list[str]:
    """The zero-padded image ids of a curated list, one a line."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def resize_crop(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Shorter side to `size`, then the centre `size` x `size` crop."""
    W, H = image.size
    scale = size / min(W, H)
    rw, rh = max(size, round(W * scale)), max(size, round(H * scale))
    image = image.resize((rw, rh), resample)
    left, top = (rw - size) // 2, (rh - size) // 2
    return image.crop((left, top, left + size, top + size))


def protocol_labels(label_map: np.ndarray, size: int = PROTOCOL_SIZE) -> np.ndarray:
    """(H, W) uint8 label map -> (size, size) uint8 by nearest resize and centre crop."""
    return np.asarray(resize_crop(Image.fromarray(label_map), size, Image.Resampling.NEAREST))


@torch.inference_mode()
def protocol_assignments(
    encoder: SlotConEncoder, images: list[Image.Image], size: int = PROTOCOL_SIZE
) -> list[np.ndarray]:
    """RGB images -> (size, size) int16 assignment maps: bilinear resize + centre crop, dots at
    that size, upsampled bilinearly to the crop before the argmax."""
    crops = [resize_crop(image, size, Image.Resampling.BILINEAR) for image in images]
    prepared = [encoder.preprocess(crop, size) for crop in crops]
    x = torch.cat([p[0] for p in prepared])  # (B, 3, H', W'), all the same size
    infos = [p[1] for p in prepared]
    out = encoder(x, encoder.valid_mask(infos, tuple(x.shape[-2:])))
    return [assign_pixels(out.dots[i], info, encoder.stride)[0] for i, info in enumerate(infos)]


def cocostuff27_confusion(
    index,
    encoder: SlotConEncoder,
    curated: list[str],
    labels: CocoLabels | None = None,
    stuffthing_dir: Path | None = None,
    batch_size: int = 16,
) -> tuple[np.ndarray, int, int]:
    """(K, 27) histogram over the curated images found in the index, the number evaluated and
    the number missing (not indexed, unreadable, or without labels). Labels come from
    `labels` (CocoLabels with coarse=True) or from `<stuffthing_dir>/<name>.png`."""
    if (labels is None) == (stuffthing_dir is None):
        raise ValueError("give coarse annotations or a stuffthingmaps folder (one of them)")
    images = index.images_table()
    by_stem = {Path(p).stem: i for i, p in enumerate(images["path"])}
    annotation_ids = match_annotations(list(images["path"]), labels) if labels else None
    acc = ConfusionAccumulator(index.num_prototypes, 27)
    found = [by_stem[name] for name in curated if name in by_stem]
    missing = len(curated) - len(found)
    evaluated = 0
    with tqdm(total=len(found), desc="cocostuff27", unit="img") as bar:
        for start in range(0, len(found), batch_size):
            pictures, label_maps = [], []
            for row in found[start : start + batch_size]:
                path = images["path"].iloc[row]
                label_map = _label_map(row, path, labels, annotation_ids, stuffthing_dir)
                try:
                    picture = load_rgb(index.image_root / path) if label_map is not None else None
                except UnreadableImage:
                    picture = None
                if picture is None or label_map.shape != (picture.height, picture.width):
                    missing += 1
                    continue
                pictures.append(picture)
                label_maps.append(protocol_labels(label_map))
            if pictures:
                for assignment, label_map in zip(
                    protocol_assignments(encoder, pictures), label_maps
                ):
                    acc.update(assignment, label_map)
                evaluated += len(pictures)
            bar.update(min(batch_size, len(found) - start))
    return acc.counts, evaluated, missing


def _label_map(row, path, labels, annotation_ids, stuffthing_dir) -> np.ndarray | None:
    if labels is not None:
        annotation_id = annotation_ids[row]
        return None if annotation_id is None else labels.label_map(annotation_id)
    png = Path(stuffthing_dir) / (Path(path).stem + ".png")
    return read_stuffthing_png(png, coarse=True) if png.is_file() else None


def format_table(result: dict) -> str:
    """The scores of both mappings as a small text table, in percent."""
    header = (
        f"{'mapping':<10} {'mIoU':>7} {'pixel acc.':>11} {'things mIoU':>12} {'stuff mIoU':>11}"
    )
    lines = [header]
    for name in MAPPINGS:
        s = result[name]
        cells = [s["miou"], s["pixel_accuracy"], s.get("things_miou"), s.get("stuff_miou")]
        text = [f"{100 * v:.2f}" if v is not None else "-" for v in cells]
        lines.append(f"{name:<10} {text[0]:>7} {text[1]:>11} {text[2]:>12} {text[3]:>11}")
    return "\n".join(lines)


def write_csv(result: dict, path: str | Path, class_is_thing: Sequence[bool] | None) -> None:
    """One row per class: class, is_thing, hungarian_iou, majority_iou (fractions, "" = nan)."""
    names = result["class_names"]
    flags = list(class_is_thing) if class_is_thing else [""] * len(names)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "is_thing", "hungarian_iou", "majority_iou"])
        for name, is_thing in zip(names, flags):
            ious = [result[m]["per_class_iou"][name] for m in MAPPINGS]
            writer.writerow([name, is_thing, *("" if v is None else f"{v:.6f}" for v in ious)])
