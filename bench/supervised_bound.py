"""Supervised bound: can the demo network separate the scene classes at all, given labels?

A diagnostic for issue 9 (the demo model finds no object class): the demo preset's network
(backbone and projector at random init) plus a 1x1 classifier trained with per-pixel labels on
the training scenes, scored like bench/demo_quality.py (per-class IoU, object classes at
IoU >= 30) on held-out scenes. When even labels cannot make this network separate the objects,
the self-supervised recipe cannot either: capacity or resolution is the limit; when they can,
the objective is.

    PYTHONPATH=. .venv/bin/python bench/supervised_bound.py --train data/scenes-train \
        --test data/scenes-tune --steps 600
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from indexing.scores.cocostuff import IGNORE_INDEX
from indexing.scores.groundtruth import CocoLabels
from indexing.scores.metrics import ConfusionAccumulator
from model.config import PRESETS
from model.data import load_rgb
from model.encoder import SlotConEncoder


def load_split(
    encoder: SlotConEncoder, root: Path, split: str, limit: int
) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(N, 3, H, W) images as the encoder preprocesses them (the scenes' side is a multiple of
    the stride: no resize, no padding), (N, H, W) int64 labels (-100 unlabelled), class names."""
    labels = CocoLabels(root / "annotations" / f"instances_{split}.json")
    ids = labels.image_ids[:limit]
    images, maps = [], []
    for image_id in ids:
        picture = load_rgb(root / split / labels.image_info(image_id).file_name)
        x, _ = encoder.preprocess(picture, picture.height)  # normalised, at its own size
        images.append(x[0])
        label = torch.from_numpy(labels.label_map(image_id).astype(np.int64))
        maps.append(torch.where(label == IGNORE_INDEX, -100, label))
    return torch.stack(images), torch.stack(maps), labels.class_names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=Path, required=True, help="scenes (model.scenes --split train)")
    p.add_argument("--test", type=Path, required=True, help="held-out scenes (--split val)")
    p.add_argument("--train-images", type=int, default=2000, help="training scenes used")
    p.add_argument("--test-images", type=int, default=160, help="held-out scenes scored")
    p.add_argument("--steps", type=int, default=600, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=16, help="scenes per step")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate")
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    p.add_argument("--json", type=Path, default=None, help="write the scores here")
    return p


class Segmenter(torch.nn.Module):
    """The demo network (backbone, projector up to its last layer) and a 1x1 classifier."""

    def __init__(self, num_classes: int):
        super().__init__()
        cfg = PRESETS["demo"].model
        encoder = SlotConEncoder(cfg).requires_grad_(True)  # an inference module comes frozen
        self.backbone = encoder.backbone
        self.hidden = encoder.projector.mlp[:-1]  # (B, hidden, h, w)
        self.head = torch.nn.Conv2d(cfg.dim_hidden, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H, W) at image resolution
        logits = self.head(self.hidden(self.backbone(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear")


def train_segmenter(model: Segmenter, x: torch.Tensor, y: torch.Tensor, args) -> None:
    """AdamW with a cosine schedule, random batches of the training scenes."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(args.steps):
        batch = torch.randint(len(x), (args.batch_size,), generator=generator)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[batch]), y[batch], ignore_index=-100)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f}", file=sys.stderr, flush=True)


@torch.inference_mode()
def per_class_iou(model: Segmenter, x: torch.Tensor, y: torch.Tensor, num_classes: int):
    """(L,) IoU of each class, the prediction of class c read as c (no mapping)."""
    model.eval()
    confusion = ConfusionAccumulator(num_classes, num_classes)
    for i in range(0, len(x), 16):
        predicted = model(x[i : i + 16]).argmax(1)
        for p, t in zip(predicted.numpy(), y[i : i + 16].numpy()):
            confusion.update(p, np.where(t < 0, IGNORE_INDEX, t).astype(np.uint8))
    counts = confusion.counts.astype(np.float64)  # (L, L): predicted class x true class
    hits = np.diag(counts)
    return hits / np.maximum(counts.sum(0) + counts.sum(1) - hits, 1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    encoder = SlotConEncoder(PRESETS["demo"].model)  # its preprocessing only
    x_train, y_train, names = load_split(encoder, args.train, "train", args.train_images)
    x_test, y_test, _ = load_split(encoder, args.test, "val", args.test_images)
    model = Segmenter(len(names))
    started = time.time()
    train_segmenter(model, x_train, y_train, args)
    seconds = time.time() - started
    iou = per_class_iou(model, x_test, y_test, len(names))
    per_class = {n: round(100 * float(v), 1) for n, v in zip(names, iou)}
    things = names[:12]  # the scenes' twelve object classes come first
    result = {
        "steps": args.steps,
        "seconds": round(seconds),
        "miou": round(100 * float(iou.mean()), 1),
        "objects_at_30": sum(per_class[n] >= 30 for n in things),
        "per_class_iou": per_class,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
