"""The COCO-Stuff-27 protocol behind SlotCon's 18.26 mIoU / 42.36 pixel accuracy.

The protocol (PiCIE's, shared by STEGO: 27 coarse classes, the curated 2,175 val2017 images,
320 px centre crops, clusters matched by the Hungarian algorithm), its published figures and
its sources are written down in docs/COCOSTUFF27.md.

The curated val2017 images that the index holds are read as stored (no EXIF rotation: PiCIE
does not rotate, and the label maps are in stored orientation), resized (shorter side, bilinear;
labels nearest) and centre-cropped as PiCIE's eval set does (indexing.store.views: 320 / 320), or
as the authors' visualisation does (256 / 224) when asked. One pass of the model
gives, per image, the teacher's projected features; from them two predictions per pixel:
- prototypes: argmax of the prototype dots upsampled bilinearly (a (K, 27) histogram, scored
  by indexing.scores.metrics: Hungarian over pixel-weighted prototype clusters, and majority vote);
- PiCIE: 27 cosine k-means centroids of all the images' pixel features, nearest centroid per
  pixel (indexing.scores.picie), a (27, 27) histogram matched by the Hungarian algorithm.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from indexing.scores.annotations import match_annotations
from indexing.scores.groundtruth import CocoLabels, read_stuffthing_png
from indexing.scores.metrics import ConfusionAccumulator
from indexing.scores.picie import cluster_map, fit_centroids
from indexing.store.views import PICIE_VIEW, View, view_image, view_labels
from model.data import UnreadableImage, load_rgb
from model.encoder import SlotConEncoder
from model.transforms import Preprocessed, assign_pixels

NUM_CLASSES = 27
CURATED_LIST = Path(__file__).parents[1] / "data" / "cocostuff27_val2017_curated.txt"


def read_curated(path: str | Path = CURATED_LIST) -> list[str]:
    """The zero-padded image ids of a curated list, one a line."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


class ProtocolResult(NamedTuple):
    prototype_counts: np.ndarray  # (K, 27) int64 pixels of (argmax prototype, class)
    cluster_counts: np.ndarray  # (n, 27) int64 pixels of (PiCIE cluster, class); n = 27 but
    # on sets of fewer than 27 feature-map cells
    evaluated: int  # images scored
    missing: int  # curated images not indexed, unreadable, or without (matching) labels


def cocostuff27(
    index,
    encoder: SlotConEncoder,
    curated: list[str],
    labels: CocoLabels | None = None,
    stuffthing_dir: Path | None = None,
    view: View = PICIE_VIEW,
    batch_size: int = 16,
    seed: int = 0,
) -> ProtocolResult:
    """Run the protocol over the curated images found in `index` (a ConceptIndex).

    Labels come from `labels` (CocoLabels with coarse=True) or `<stuffthing_dir>/<name>.png`.
    Memory: the features of every evaluated image are kept for the clustering (the curated
    2,175 images at 320 px: about 0.2 GB for ResNet-50, D 256, stride 32).
    """
    if (labels is None) == (stuffthing_dir is None):
        raise ValueError("give coarse annotations or a stuffthingmaps folder (one of them)")
    images = index.images_table()
    by_stem = {Path(p).stem: i for i, p in enumerate(images["path"])}
    annotation_ids = match_annotations(list(images["path"]), labels) if labels else None
    found = [by_stem[name] for name in curated if name in by_stem]
    missing = len(curated) - len(found)
    acc = ConfusionAccumulator(encoder.num_prototypes, NUM_CLASSES)
    kept: list[tuple[torch.Tensor, Preprocessed, np.ndarray]] = []  # features, info, labels
    with tqdm(total=len(found), desc="cocostuff27", unit="img") as bar:
        for start in range(0, len(found), batch_size):
            batch = []
            for row in found[start : start + batch_size]:
                path = images["path"].iloc[row]
                label_map = _label_map(row, path, labels, annotation_ids, stuffthing_dir)
                picture = _read(index.image_root / path) if label_map is not None else None
                if picture is None or label_map.shape != (picture.height, picture.width):
                    missing += 1
                    continue
                batch.append((view_image(picture, view), view_labels(label_map, view)))
            kept += _features(encoder, batch, view)
            bar.update(min(batch_size, len(found) - start))
    for features, info, label_crop in kept:
        acc.update(_prototype_map(encoder, features, info), label_crop)
    cluster_counts = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    if kept:
        cells = np.concatenate([f.flatten(1).T.cpu().numpy() for f, _, _ in kept])  # (N, D)
        centroids = fit_centroids(cells, NUM_CLASSES, seed)
        clusters = ConfusionAccumulator(len(centroids), NUM_CLASSES)
        for features, info, label_crop in kept:
            clusters.update(cluster_map(features, info, encoder.stride, centroids), label_crop)
        cluster_counts = clusters.counts
    return ProtocolResult(acc.counts, cluster_counts, len(kept), missing)


def _read(path: Path) -> Image.Image | None:
    try:
        return load_rgb(path, exif_transpose=False)  # stored orientation, as the labels
    except UnreadableImage:
        return None


@torch.inference_mode()
def _features(encoder: SlotConEncoder, batch: list, view: View):
    """(features (D, h, w) of the valid cells, Preprocessed, labels) of each (crop, labels)."""
    if not batch:
        return []
    prepared = [encoder.preprocess(crop, view.crop) for crop, _ in batch]
    x = torch.cat([p[0] for p in prepared])  # (B, 3, H', W'), all the same size
    z = encoder.features(x)  # (B, D, h, w)
    out = []
    for i, ((_, info), (_, label_crop)) in enumerate(zip(prepared, batch)):
        w, h = info.map_size
        out.append((z[i, :, :h, :w].cpu(), info, label_crop))
    return out


@torch.inference_mode()
def _prototype_map(encoder: SlotConEncoder, features: torch.Tensor, info) -> np.ndarray:
    """(crop, crop) argmax prototype of the upsampled dots of one image's features (D, h, w)."""
    dots = encoder.grouping(features[None].to(encoder.device)).dots[0]  # (K, h, w)
    return assign_pixels(dots, info, encoder.stride)[0]


def _label_map(row, path, labels, annotation_ids, stuffthing_dir) -> np.ndarray | None:
    if labels is not None:
        annotation_id = annotation_ids[row]
        return None if annotation_id is None else labels.label_map(annotation_id)
    png = Path(stuffthing_dir) / (Path(path).stem + ".png")
    return read_stuffthing_png(png, coarse=True) if png.is_file() else None
