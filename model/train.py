"""Train SlotCon: `python -m model.train --preset demo --data DIR --out runs/demo`.

Several processes: `torchrun --nproc_per_node=N -m model.train ...` (NCCL on GPUs, gloo on CPU).
Writes <out>/last.pt (full training state, for --resume), <out>/encoder.pt (teacher only, for
indexing and the app) and <out>/log.jsonl (one JSON object per step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import TextIO

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from model import distributed
from model.augment import AugmentConfig
from model.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    encoder_checkpoint,
    read_checkpoint,
    save_atomic,
    teacher_state,
)
from model.config import PRESETS, ModelConfig, TrainConfig, model_config_from_dict, override
from model.data import EpochSampler, ImageCollection, TwoViewDataset, collection_root
from model.flags import add_config_flags
from model.optim import build_optimizer, learning_rate
from model.outdir import check_output_dir, is_run_dir
from model.slotcon import SlotCon, SlotConLosses, teacher_momentum
from model.tensor_views import BatchTwoViews, DecodedImages
from model.workers import exit_with_parent


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or cfg.precision == "fp32":
        return None
    return torch.bfloat16 if cfg.precision == "bf16" else torch.float16


def _training_state(cfg, model, optimizer, scaler, epoch: int, step: int) -> dict:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": "training",
        "config": asdict(cfg),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,  # completed epochs
        "step": step,  # completed optimisation steps
        "rng": rng,
    }


def _encoder(cfg: TrainConfig, model, epoch: int, step: int) -> dict:
    state = teacher_state(model.state_dict())
    return encoder_checkpoint(cfg.model, state, epoch=epoch, step=step, seed=cfg.seed)


def _save(out: Path, cfg: TrainConfig, model, optimizer, scaler, epoch: int, step: int) -> None:
    save_atomic(_training_state(cfg, model, optimizer, scaler, epoch, step), out / "last.pt")
    save_atomic(_encoder(cfg, model, epoch, step), out / "encoder.pt")


def snapshot_path(out: Path, epoch: int) -> Path:
    """Where the teacher snapshot after `epoch` completed epochs is kept (an encoder file)."""
    return out / "snapshots" / f"encoder-epoch{epoch:04d}.pt"


def _restore(path: Path, cfg: TrainConfig, model, optimizer, scaler) -> tuple[int, int]:
    """Load a training checkpoint into the objects; returns (completed epochs, steps)."""
    state = read_checkpoint(path)
    if state.get("kind") != "training":
        raise CheckpointError(f"{path}: not a training checkpoint, cannot resume from it")
    saved = model_config_from_dict(state["config"]["model"])
    if saved != cfg.model:
        raise CheckpointError(
            f"{path} was trained with another model ({saved}); use another --out or --no-resume"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["epoch"]), int(state["step"])


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records after `step`: steps run after the last checkpoint are run again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line torn by the interruption
    path.write_text("".join(kept))


def _stop_if_diverged(losses: SlotConLosses, world: int, step: int, epoch: int, out: Path) -> None:
    """Raise TrainingDiverged unless every process's loss is finite (before the update)."""
    finite = distributed.all_reduce_sum(torch.isfinite(losses.loss).float())
    if finite.item() < world:
        raise TrainingDiverged(
            f"loss is {losses.loss.item()} at step {step} (epoch {epoch}); stopped. The last "
            f"good checkpoint is kept in {out}; lower --lr or use --precision bf16/fp32"
        )


def optimisation_step(
    net: torch.nn.Module,
    model: SlotCon,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    views: list[torch.Tensor],
    amp_dtype: torch.dtype | None,
    momentum: float,
    check: Callable[[SlotConLosses], None] | None = None,
    lap: Callable[[str], None] | None = None,
) -> SlotConLosses:
    """One step: forward (autocast when `amp_dtype`), `check` on the detached losses before
    anything changes, backward, optimizer, teacher EMA. `net` is `model` or its DDP wrapper.
    `lap(stage)` is called as each stage ends ("forward", "backward", "optimizer", "ema"), so
    that bench/train_speed.py times this very code stage by stage."""
    lap = lap or _no_lap
    device_type = views[0].device.type
    with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
        losses = net(*views)
    if check is not None:
        check(SlotConLosses(*(None if t is None else t.detach() for t in losses)))
    lap("forward")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses.loss).backward()
    lap("backward")
    scaler.step(optimizer)
    scaler.update()
    lap("optimizer")
    model.update_teacher(momentum)
    lap("ema")
    return losses


def _no_lap(_stage: str) -> None:
    pass


def views_to_device(views, device: torch.device) -> list[torch.Tensor]:
    """A batch's TwoViews (or ManyViews) tensors on `device`, the two views channels_last as
    the model (`_model`)."""
    tensors = [t.to(device, non_blocking=True) for t in views]
    tensors[0] = tensors[0].contiguous(memory_format=torch.channels_last)
    tensors[1] = tensors[1].contiguous(memory_format=torch.channels_last)
    return tensors


def augment_config(cfg: TrainConfig) -> AugmentConfig:
    """The trainer's fields of the same names; `size` is TrainConfig's image_size."""
    same = {f.name: getattr(cfg, f.name) for f in fields(AugmentConfig) if hasattr(cfg, f.name)}
    return AugmentConfig(size=cfg.image_size, **same)


def _data(cfg: TrainConfig, per_rank: int, rank: int, world: int, device: torch.device):
    """This rank's sampler and a function giving the epoch's batches as (TwoViews of (B, ...)
    tensors, number of samples that replaced an unreadable image)."""
    images = ImageCollection(collection_root(cfg.data, cfg.split))
    augment = augment_config(cfg)
    if cfg.pipeline == "tensor":
        decoded = DecodedImages(images, progress=distributed.is_main_process())
        if decoded.skipped and distributed.is_main_process():
            print(f"warning: {len(decoded.skipped)} unreadable images skipped", file=sys.stderr)
        sampler = EpochSampler(len(decoded), per_rank, cfg.seed, rank, world)
        make_views = BatchTwoViews(decoded, augment, cfg.seed)

        def tensor_batches():
            keys = list(sampler)
            for start in range(0, len(keys), per_rank):
                yield make_views(keys[start : start + per_rank]), 0

        return sampler, tensor_batches
    dataset = TwoViewDataset(images, augment, cfg.seed)
    sampler = EpochSampler(len(images), per_rank, cfg.seed, rank, world)
    loader = DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=cfg.workers > 0,
        worker_init_fn=exit_with_parent if cfg.workers > 0 else None,
    )
    return sampler, lambda: ((views, int(skipped.gt(0).sum())) for views, skipped in loader)


@dataclass(frozen=True)
class Schedule:
    """The run's learning rate and teacher momentum at each optimisation step."""

    total_steps: int  # optimisation steps of the whole run: epochs x steps per epoch
    warmup_steps: int  # steps of linear learning-rate warm-up
    lr: float  # peak learning rate, reached at the end of the warm-up
    min_lr: float  # learning rate at the end of the cosine decay
    momentum: float  # teacher EMA momentum at step 0; rises to 1 at the end (cosine)

    def at(self, step: int) -> tuple[float, float]:
        """(learning rate, teacher momentum) for the step after `step` completed steps."""
        lr = learning_rate(step, self.total_steps, self.warmup_steps, self.lr, self.min_lr)
        return lr, teacher_momentum(step, self.total_steps, self.momentum)


def train_one_epoch(
    net: torch.nn.Module,
    model: SlotCon,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batches: Iterable[tuple[Sequence[torch.Tensor], int]],
    schedule: Schedule,
    epoch: int,
    step: int,
    amp_dtype: torch.dtype | None,
    out: Path,
    report: Callable[[dict], None],
) -> tuple[int, int]:
    """One epoch of optimisation steps; returns (completed steps, samples that replaced an
    unreadable image). `batches` gives (TwoViews tensors, replaced samples) per step; `report`
    gets each step's log record (step, epoch, losses, lr, momentum, images_per_s)."""
    device = next(model.parameters()).device
    world = distributed.world_size()
    skipped_total = 0
    tick = time.perf_counter()
    for views, skipped in batches:
        skipped_total += skipped
        lr, momentum = schedule.at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tensors = views_to_device(views, device)
        check = partial(_stop_if_diverged, world=world, step=step, epoch=epoch, out=out)
        losses = optimisation_step(
            net, model, optimizer, scaler, tensors, amp_dtype, momentum, check
        )
        step += 1
        now = time.perf_counter()
        report(
            {
                "step": step,
                "epoch": epoch,
                "loss": losses.loss.item(),
                "group_loss": losses.group.item(),
                "slot_loss": losses.slot.item(),
                **({} if losses.region is None else {"region_loss": losses.region.item()}),
                "lr": lr,
                "momentum": momentum,
                "images_per_s": tensors[0].shape[0] * world / max(now - tick, 1e-9),
            }
        )
        tick = now
    return step, skipped_total


def _log_to(log: TextIO | None, bar: tqdm) -> Callable[[dict], None]:
    """A report function for train_one_epoch: one JSON line in `log` (if any), the bar's postfix."""

    def report(record: dict) -> None:
        if log:
            log.write(json.dumps(record) + "\n")
            log.flush()
        postfix = {"loss": f"{record['loss']:.3f}", "ips": f"{record['images_per_s']:.0f}"}
        bar.set_postfix(postfix, refresh=False)  # update() draws it: one line a step, not two
        bar.update(1)

    return report


def _processes(cfg: TrainConfig) -> tuple[torch.device, int, int, int]:
    """(device, world size, rank, samples per rank and step): joins torchrun's process group
    when there is one; cfg.device, when set, overrides the device it picks."""
    device = distributed.init_from_environment()
    if cfg.device:
        device = torch.device(cfg.device)
    world, rank = distributed.world_size(), distributed.rank()
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by {world} processes")
    return device, world, rank, cfg.batch_size // world


def _device_ids(device: torch.device) -> list[int] | None:
    """DistributedDataParallel's device_ids: this process's GPU, None on the CPU."""
    return [device.index] if device.type == "cuda" else None


def _save_after_epoch(
    out: Path, cfg: TrainConfig, model, optimizer, scaler, done: int, step: int, last_epoch: int
) -> None:
    """After `done` completed epochs: the teacher snapshot every cfg.snapshot_every epochs, the
    checkpoints (last.pt, encoder.pt) every cfg.save_every epochs and at the end."""
    if cfg.snapshot_every and done % cfg.snapshot_every == 0:
        snapshot_path(out, done).parent.mkdir(exist_ok=True)
        save_atomic(_encoder(cfg, model, done, step), snapshot_path(out, done))
    if done % cfg.save_every == 0 or done == cfg.epochs or done == last_epoch:
        _save(out, cfg, model, optimizer, scaler, done, step)


def _model(cfg: TrainConfig, device: torch.device, world: int) -> SlotCon:
    """The SlotCon module on `device`: SyncBatchNorm across GPUs, channels_last (the layout
    oneDNN's CPU convolutions and cuDNN's tensor cores prefer; docs/BENCHMARKS.md)."""
    model = SlotCon(cfg.model).to(device)
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(memory_format=torch.channels_last)


def _schedule(cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
    """The learning-rate and teacher-momentum schedule of the whole run (cfg.epochs)."""
    return Schedule(
        total_steps=cfg.epochs * steps_per_epoch,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        lr=cfg.lr,
        min_lr=cfg.min_lr,
        momentum=cfg.teacher_momentum,
    )


def _resume(out: Path, cfg: TrainConfig, model, optimizer, scaler) -> tuple[int, int]:
    """(epoch, step) to start at: those of out/last.pt, restored into the model, optimizer and
    scaler, when the run has one; else (0, 0)."""
    if not (out / "last.pt").is_file():
        return 0, 0
    start_epoch, step = _restore(out / "last.pt", cfg, model, optimizer, scaler)
    if distributed.is_main_process():
        print(f"resuming from {out / 'last.pt'} at epoch {start_epoch}, step {step}")
    return start_epoch, step


def train(cfg: TrainConfig, resume: bool = True, stop_after_epochs: int | None = None) -> Path:
    """Run (or continue) training; returns the output directory.

    `stop_after_epochs` ends the run early while keeping the schedule of `cfg.epochs`
    (an interruption that --resume continues exactly). Continues or restarts only a run
    directory of this program (model.outdir.OutputDirError otherwise, before any work).
    """
    check_output_dir(cfg.out, is_run_dir, "a training run")
    device, world, rank, per_rank = _processes(cfg)
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)

    model = _model(cfg, device, world)
    sampler, batches = _data(cfg, per_rank, rank, world, device)
    schedule = _schedule(cfg, steps_per_epoch=len(sampler) // per_rank)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay)
    amp_dtype = _autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    start_epoch, step = _resume(out, cfg, model, optimizer, scaler) if resume else (0, 0)
    net = DistributedDataParallel(model, device_ids=_device_ids(device)) if world > 1 else model

    main = distributed.is_main_process()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        _truncate_log(out / "log.jsonl", step)
    log = (out / "log.jsonl").open("a") if main else None
    last_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    bar = tqdm(
        total=schedule.total_steps, initial=step, disable=not main, desc="train", unit="step"
    )
    skipped_total = 0
    try:
        for epoch in range(start_epoch, last_epoch):
            sampler.set_epoch(epoch)
            step, skipped = train_one_epoch(
                net,
                model,
                optimizer,
                scaler,
                batches(),
                schedule,
                epoch,
                step,
                amp_dtype,
                out,
                report=_log_to(log, bar),
            )
            skipped_total += skipped
            if main:
                _save_after_epoch(out, cfg, model, optimizer, scaler, epoch + 1, step, last_epoch)
            distributed.barrier()
    finally:
        bar.close()
        if log:
            log.close()
    if skipped_total and main:
        print(f"warning: {skipped_total} samples replaced unreadable images", file=sys.stderr)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model.train",
        description="Train SlotCon on a folder of images (or a COCO split). Every field of the "
        "preset can be overridden by its flag.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="demo",
        help="paper-coco-r50: the paper's COCO run (8 GPUs); demo: small, about 80 min on 2 CPU "
        "cores for 2,000 scenes (docs/DEMO_MODEL.md); tiny: tests (default: demo)",
    )
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from <out>/last.pt when it exists (default: yes)",
    )
    parser.add_argument(
        "--stop-after-epochs",
        type=int,
        default=None,
        help="stop early but keep the --epochs schedule (resume later to finish)",
    )
    preset_value = "preset value if omitted"
    scaled = "preset value x batch size / preset batch size if omitted"
    for cls in (TrainConfig, ModelConfig):
        add_config_flags(parser, cls, omit=("model",), unset=preset_value, notes={"lr": scaled})
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset with the given flags; a --batch-size without --lr scales the preset's learning
    rate linearly (the paper's rule: lr = 1.0 x batch / 256 with LARS)."""
    names = {f.name for cls in (TrainConfig, ModelConfig) for f in fields(cls)} - {"model"}
    changes = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    preset = PRESETS[args.preset]
    if "batch_size" in changes and "lr" not in changes:
        changes["lr"] = preset.lr * changes["batch_size"] / preset.batch_size
    return override(preset, **changes)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    if not cfg.data:
        parser.error("--data is required (a folder of images, or a COCO root with --split)")
    try:
        out = train(cfg, resume=args.resume, stop_after_epochs=args.stop_after_epochs)
        if distributed.is_main_process():
            print(f"done: {out / 'encoder.pt'}")
    except (TrainingDiverged, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
