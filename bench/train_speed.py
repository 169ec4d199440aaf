"""Training throughput of a preset: images/s of the trainer's step, alone and fed by its data.

    python bench/train_speed.py --preset paper-coco-r50 --batch-size 64 --device cuda
    python bench/train_speed.py --preset demo --device cpu --data data/scenes-train-natural/train

Times `model.train.optimisation_step` (forward of both views through student and teacher,
both losses, backward, optimizer, teacher EMA) stage by stage, with the model, precision and
memory format the trainer uses. Without --data the step runs on synthetic views already on the
device. With --data DIR it runs twice, in one process on one machine:
- step only: batches of the preset's own pipeline made beforehand and kept in memory (the step's
  work depends on the images: the slot loss grows with the prototypes present in them);
- real run: the same batches, made by the same pipeline while the steps run, as the trainer
  makes them; its "data" stage is the time the loop waits for the next batch.
Both start from the same seed and see the same batches, so they do the same work; the ratio
of their images/s is what feeding the step costs. Stage times are means over the timed steps
(torch.cuda.synchronize at each stage's end on CUDA). Prints Markdown; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import torch
from machine import cpu_name  # bench/machine.py, beside this script

from model.config import PRESETS, TrainConfig, override
from model.optim import build_optimizer
from model.train import _autocast_dtype, _data, _model, optimisation_step, views_to_device

STAGES = ("data", "forward", "backward", "optimizer", "ema")


class StageTimer:
    """Seconds spent in each stage, summed over the steps it is told to count."""

    def __init__(self, device: torch.device):
        self.device = device
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.counting = False
        self._last = 0.0

    def start(self) -> None:
        self._sync()
        self._last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        """The end of `stage`: what ran since the last call (or start) is charged to it."""
        self._sync()
        now = time.perf_counter()
        if self.counting:
            self.totals[stage] += now - self._last
        self._last = now

    def _sync(self) -> None:
        if self.device.type == "cuda":  # kernels run asynchronously: wait for them
            torch.cuda.synchronize(self.device)


def synthetic_views(cfg: TrainConfig, batch: int, device: torch.device, seed: int = 0) -> list:
    """Normalised views with overlapping boxes and random flips, as the pipelines give them
    (with the preset's local views, if it has any)."""
    g = torch.Generator().manual_seed(seed)
    size = cfg.image_size
    views = [torch.randn(batch, 3, size, size, generator=g) for _ in range(2)]
    corners = torch.rand(batch, 2, generator=g) * 0.4
    boxes = torch.cat([corners, corners + 0.5 + 0.1 * torch.rand(batch, 2, generator=g)], dim=1)
    flips = [torch.rand(batch, generator=g) < 0.5 for _ in range(2)]
    tensors = [*views, boxes, boxes.clone(), *flips]
    n, s = cfg.local_views, cfg.local_size
    if n:
        tensors += [
            torch.randn(batch, n, 3, s, s, generator=g),
            boxes[:, None].expand(batch, n, 4).clone(),
            torch.rand(batch, n, generator=g) < 0.5,
        ]
    return views_to_device(tensors, device)


def pipeline_views(cfg: TrainConfig, batch: int, device: torch.device) -> Iterator[list]:
    """An endless source of the trainer's own batches for `cfg.data` (epoch after epoch), on
    `device`. The collection is read (and, for the tensor pipeline, decoded) here, not lazily."""
    sampler, batches = _data(cfg, batch, 0, 1, device)

    def endless():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            for views, _ in batches():
                yield views_to_device(views, device)
            epoch += 1

    return endless()


def run_steps(cfg: TrainConfig, device: torch.device, source, steps: int, warmup: int) -> dict:
    """`warmup` + `steps` optimisation steps of a fresh model (seed 0) on the batches of
    `source`; returns the timed steps' seconds per stage and in all."""
    torch.manual_seed(0)
    model = _model(cfg, device, world=1)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay)
    amp_dtype = _autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    timer = StageTimer(device)
    for i in range(warmup + steps):
        if i == warmup:
            timer.counting, began = True, time.perf_counter()
        timer.start()
        views = next(source)
        timer("data")
        losses = optimisation_step(
            model, model, optimizer, scaler, views, amp_dtype, cfg.teacher_momentum, lap=timer
        )
    total = time.perf_counter() - began
    if not torch.isfinite(losses.loss):
        raise RuntimeError(f"non-finite loss {losses.loss.item()}: the timing is meaningless")
    return {"step_s": total / steps, "stage_s": {k: v / steps for k, v in timer.totals.items()}}


def _record(cfg: TrainConfig, preset: str, batch: int, device, steps: int, fed_by: str) -> dict:
    amp_dtype = _autocast_dtype(cfg, device)
    return {
        "preset": preset,
        "fed_by": fed_by,
        "arch": cfg.model.arch,
        "width": cfg.model.width,
        "num_prototypes": cfg.model.num_prototypes,
        "image_size": cfg.image_size,
        "local_views": cfg.local_views,
        "batch": batch,
        "precision": str(amp_dtype).removeprefix("torch.") if amp_dtype else "fp32",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "steps": steps,
        "torch": torch.__version__,
    }


def measure(
    preset: str, batch: int, device: torch.device, steps: int, warmup: int, data: str = ""
) -> list[dict]:
    """Step only (synthetic views, or the pipeline's batches made beforehand when `data`) and,
    with `data`, the real run fed by the preset's pipeline while it trains."""
    cfg = override(PRESETS[preset], data=data) if data else PRESETS[preset]
    count = warmup + steps
    if data:
        premade = list(islice(pipeline_views(cfg, batch, device), count))
        fed_by = f"{cfg.pipeline} batches made beforehand (step only)"
    else:
        premade = [synthetic_views(cfg, batch, device)] * count
        fed_by = "synthetic views (step only)"
    runs = [(fed_by, iter(premade))]
    if data:
        del premade  # the real run makes its own
        runs.append((f"{cfg.pipeline} pipeline (real run)", pipeline_views(cfg, batch, device)))
    results = []
    for fed_by, source in runs:
        timed = run_steps(cfg, device, source, steps, warmup)
        record = _record(cfg, preset, batch, device, steps, fed_by)
        results.append({**record, **timed, "images_per_s": batch / timed["step_s"]})
        if device.type == "cuda":
            results[-1]["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return results


def markdown(results: list[dict]) -> str:
    """Rows of the results' figures, stage times in ms per step, and the real / step ratio."""
    lines = [
        "| preset | device | threads | precision | batch | view px | fed by | s / step | "
        "images/s | data ms | forward ms | backward ms | optimizer ms | EMA ms |",
        "|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        stages = " | ".join(f"{1000 * r['stage_s'][k]:.0f}" for k in STAGES)
        lines.append(
            f"| {r['preset']} | {r['device']} | {r['threads']} | {r['precision']} | "
            f"{r['batch']} | {r['image_size']} | {r['fed_by']} | {r['step_s']:.3f} | "
            f"{r['images_per_s']:.1f} | {stages} |"
        )
    if len(results) == 2:
        ratio = results[1]["images_per_s"] / results[0]["images_per_s"]
        lines.append(f"\nreal run / step only: {100 * ratio:.0f} %")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper-coco-r50")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (mean reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument(
        "--data", default="", help="also time the real run, fed by the preset's pipeline from DIR"
    )
    parser.add_argument("--json", default="", help="write the result here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 1
    results = measure(args.preset, args.batch_size, device, args.steps, args.warmup, args.data)
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
