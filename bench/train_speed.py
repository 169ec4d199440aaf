"""Training throughput of a preset's shapes: images/s of the trainer's optimisation step.

    python bench/train_speed.py --preset paper-coco-r50 --batch-size 64 --device cuda
    python bench/train_speed.py --preset demo --device cpu

Times `model.train.optimisation_step` (forward of both views through student and teacher,
both losses, backward, optimizer, teacher EMA) on synthetic views already on the device, with
the preset's precision and channels_last on CUDA, like the trainer. With --data DIR it also
times the same steps fed by the preset's real data pipeline (model.train's, images of DIR), so
that the two figures, step only and with data, come from one process on one machine:

    python bench/train_speed.py --preset demo --device cpu --data data/scenes-train/train

Prints Markdown rows; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import cpu_name  # bench/machine.py, beside this script

from model.config import PRESETS, override
from model.optim import build_optimizer
from model.slotcon import SlotCon
from model.train import _autocast_dtype, _data, optimisation_step, views_to_device


def synthetic_views(batch: int, size: int, device: torch.device, seed: int = 0) -> list:
    """Two normalised views with overlapping boxes and random flips, as TwoViewDataset gives."""
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(batch, 3, size, size, generator=g) for _ in range(2)]
    corners = torch.rand(batch, 2, generator=g) * 0.4
    boxes = torch.cat([corners, corners + 0.5 + 0.1 * torch.rand(batch, 2, generator=g)], dim=1)
    flips = [torch.rand(batch, generator=g) < 0.5 for _ in range(2)]
    return views_to_device([*views, boxes, boxes.clone(), *flips], device)


def real_views(cfg, batch: int, device: torch.device):
    """An endless source of batches from the trainer's own pipeline for `cfg.data`."""
    _, batches = _data(cfg, batch, 0, 1, device)
    while True:
        for views, _ in batches():
            yield views_to_device(views, device)


def measure(
    preset: str, batch: int, device: torch.device, steps: int, warmup: int, data: str = ""
) -> dict:
    """Median images/s of the optimisation step; with `data`, each timed step includes making
    its batch with the preset's pipeline."""
    cfg = override(PRESETS[preset], data=data) if data else PRESETS[preset]
    torch.manual_seed(0)
    model = SlotCon(cfg.model).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay)
    amp_dtype = _autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    source = real_views(cfg, batch, device) if data else None
    views = synthetic_views(batch, cfg.image_size, device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if source is not None:
            views = next(source)
        losses = optimisation_step(model, model, optimizer, scaler, views, amp_dtype, 0.99)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if not torch.isfinite(losses.loss):
        raise RuntimeError(f"non-finite loss {losses.loss.item()}: the timing is meaningless")
    step_s = statistics.median(times)
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {
        "preset": preset,
        "fed_by": f"{cfg.pipeline} pipeline" if data else "synthetic views (step only)",
        "arch": cfg.model.arch,
        "width": cfg.model.width,
        "num_prototypes": cfg.model.num_prototypes,
        "image_size": cfg.image_size,
        "batch": batch,
        "precision": str(amp_dtype).removeprefix("torch.") if amp_dtype else "fp32",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "steps": steps,
        "step_s_median": step_s,
        "images_per_s": batch / step_s,
        "peak_memory_gib": peak_gib,
        "torch": torch.__version__,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper-coco-r50")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument(
        "--data", default="", help="also time the steps fed by the preset's pipeline from DIR"
    )
    parser.add_argument("--json", default="", help="write the result here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 1
    results = [measure(args.preset, args.batch_size, device, args.steps, args.warmup)]
    if args.data:
        results.append(
            measure(args.preset, args.batch_size, device, args.steps, args.warmup, args.data)
        )
    print("| preset | device | precision | batch | view px | fed by | step s (median) | images/s |")
    print("|---|---|---|---:|---:|---|---:|---:|")
    for r in results:
        print(
            f"| {r['preset']} | {r['device']} | {r['precision']} | {r['batch']} | "
            f"{r['image_size']} | {r['fed_by']} | {r['step_s_median']:.3f} | "
            f"{r['images_per_s']:.1f} |"
        )
    if len(results) == 2:
        ratio = results[1]["images_per_s"] / results[0]["images_per_s"]
        print(f"\nwith data / step only: {100 * ratio:.0f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
