"""Linear probe: are the scene classes linearly readable from an encoder's per-cell features?

A diagnostic beside the grouping scores: when object pixels are not linearly separable in the
features, no choice of prototypes can find the objects. Features are the stride-s maps of whole
scenes (backbone output, and the L2-normalised projector output that the prototypes see); the
label of a cell is the class at its centre. A softmax classifier (Adam, full batch) is trained on
the first scenes and tested on the next ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from indexing.scores.groundtruth import CocoLabels
from model import SlotConEncoder
from model.data import load_rgb


@torch.inference_mode()
def cell_features(encoder: SlotConEncoder, image) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Backbone (N, C) and normalised projector (N, D) features of one image's map cells, and
    the map's (h, w) and the resized image size (w', h')."""
    x, info = encoder.preprocess(image)
    backbone = encoder.backbone(x)  # (1, C, h, w)
    projected = F.normalize(encoder.projector(backbone), dim=1)  # (1, D, h, w)
    w, h = info.map_size
    backbone, projected = backbone[0, :, :h, :w], projected[0, :, :h, :w]
    return backbone.flatten(1).T, projected.flatten(1).T, (h, w), info.resized_size


def cell_labels(label_map: np.ndarray, map_hw: tuple[int, int], resized: tuple, stride: int):
    """Class id at the centre of every map cell, (h * w,) int64 (label map at image size)."""
    H, W = label_map.shape
    h, w = map_hw
    rw, rh = resized
    ys = ((np.arange(h) * stride + stride / 2) * H / rh).astype(int).clip(0, H - 1)
    xs = ((np.arange(w) * stride + stride / 2) * W / rw).astype(int).clip(0, W - 1)
    return torch.from_numpy(label_map[np.ix_(ys, xs)].astype(np.int64).ravel())


def _fit_and_score(x_train, y_train, x_test, y_test, classes, thing_ids, steps, seed) -> dict:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(seed)
    linear = torch.nn.Linear(x_train.shape[1], classes)
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(linear(x_train), y_train).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = linear(x_test).argmax(1)
    correct = predicted == y_test
    things = torch.isin(y_test, thing_ids)
    ious = []
    for c in y_test.unique():
        inter = ((predicted == c) & (y_test == c)).sum()
        union = ((predicted == c) | (y_test == c)).sum()
        ious.append(float(inter) / float(union))
    return {
        "all_pixels": 100 * float(correct.float().mean()),
        "object_pixels": 100 * float(correct[things].float().mean()),
        "miou": 100 * float(np.mean(ious)),
    }


def probe(
    encoder: SlotConEncoder,
    labels: CocoLabels,
    image_dir: Path,
    train_images: int = 120,
    test_images: int = 40,
    steps: int = 300,
    seed: int = 0,
) -> dict:
    """{"backbone": scores, "projector": scores}, scores in percent: all pixels and object
    (thing) pixels classified correctly, and the mean IoU of the probe's predictions."""
    ids = labels.image_ids[: train_images + test_images]
    if len(ids) < train_images + test_images:
        raise ValueError(f"the probe needs {train_images + test_images} images, got {len(ids)}")
    feats = {"backbone": [], "projector": []}
    ys = []
    for image_id in ids:
        info = labels.image_info(image_id)
        backbone, projected, map_hw, resized = cell_features(
            encoder, load_rgb(image_dir / info.file_name)
        )
        feats["backbone"].append(backbone)
        feats["projector"].append(projected)
        ys.append(cell_labels(labels.label_map(image_id), map_hw, resized, encoder.stride))
    y = torch.cat(ys)
    labelled = y != 255  # unlabelled cells are left out
    train = torch.zeros_like(labelled)
    train[: sum(len(c) for c in ys[:train_images])] = True
    thing_ids = torch.tensor([i for i, t in enumerate(labels.class_is_thing) if t])
    scores = {}
    for name, f in feats.items():
        x = torch.cat(f)
        scores[name] = _fit_and_score(
            x[train & labelled],
            y[train & labelled],
            x[~train & labelled],
            y[~train & labelled],
            labels.num_classes,
            thing_ids,
            steps,
            seed,
        )
    return scores
