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

from indexing.cocostuff import IGNORE_INDEX
from indexing.groundtruth import CocoLabels
from indexing.metrics import ConfusionAccumulator
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    cfg = PRESETS["demo"].model
    encoder = SlotConEncoder(cfg)
    x_train, y_train, names = load_split(encoder, args.train, "train", args.train_images)
    x_test, y_test, _ = load_split(encoder, args.test, "val", args.test_images)
    head = torch.nn.Conv2d(cfg.dim_hidden, len(names), 1)
    hidden = encoder.projector.mlp[:-1]  # the projector up to its last layer: (B, hidden, h, w)

    def logits(x: torch.Tensor) -> torch.Tensor:  # (B, L, H, W) at image resolution
        return F.interpolate(head(hidden(encoder.backbone(x))), size=x.shape[-2:], mode="bilinear")

    parameters = [*encoder.backbone.parameters(), *encoder.projector.parameters()]
    optimizer = torch.optim.AdamW([*parameters, *head.parameters()], lr=args.lr)
    encoder.train()
    started = time.time()
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(args.steps):
        batch = torch.randint(len(x_train), (args.batch_size,), generator=generator)
        lr = args.lr * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss = F.cross_entropy(logits(x_train[batch]), y_train[batch], ignore_index=-100)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f}", file=sys.stderr, flush=True)
    seconds = time.time() - started
    encoder.eval()
    confusion = ConfusionAccumulator(len(names), len(names))
    with torch.inference_mode():
        for i in range(0, len(x_test), 16):
            predicted = logits(x_test[i : i + 16]).argmax(1)
            for p, y in zip(predicted.numpy(), y_test[i : i + 16].numpy()):
                confusion.update(p, np.where(y < 0, IGNORE_INDEX, y).astype(np.uint8))
    counts = confusion.counts.astype(np.float64)  # (L, L): predicted class x true class
    hits = np.diag(counts)
    iou = hits / np.maximum(counts.sum(0) + counts.sum(1) - hits, 1)
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
