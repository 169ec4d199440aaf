"""Each way of running the network (model.runtimes, fp32 or bf16) against PyTorch eager fp32 on
the CPU: its speed and how many pixels of the real photos of the tests change prototype.

    python bench/network_agreement.py --checkpoint assets/demo_encoder.pt
    python bench/network_agreement.py --random-r50 --runs eager channels-last compile openvino
    python bench/network_agreement.py --checkpoint encoder.pt --device cuda --runs eager eager:bf16

A run is RUNTIME or RUNTIME:bf16. The photos are scikit-image's bundled files that the tests use
(tests/conftest.py PHOTOS), each grouped alone at the encoder's input size; a pixel differs when
its prototype (model.assign_pixels at image resolution) differs from the reference's. Time: the
network's forward over all photos, the second of two passes (compile compiles in the first).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage
import torch
from machine import cpu_name  # bench/machine.py, beside this script
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import PHOTOS  # noqa: E402  (the tests' list of real photos)

from model.checkpoint import encoder_checkpoint, load_encoder, save_atomic  # noqa: E402
from model.config import ModelConfig  # noqa: E402
from model.encoder import SlotConEncoder  # noqa: E402
from model.transforms import assign_pixels  # noqa: E402


def photos() -> list[Image.Image]:
    folder = Path(skimage.__file__).parent / "data"
    return [Image.open(folder / name).convert("RGB") for name in PHOTOS]


def groupings(encoder, images) -> tuple[list[np.ndarray], float]:
    """Assignment maps of the images, and the network's seconds on the second pass."""
    inputs = [encoder.preprocess(image) for image in images]
    for x, _ in inputs:  # first pass: compiles, warms the caches
        encoder.features(x)
    seconds, maps = 0.0, []
    for x, info in inputs:
        start = time.perf_counter()
        z = encoder.features(x)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        valid = encoder.valid_mask([info], x.shape[-2:]).to(z.device)
        dots = encoder.grouping(z, valid).dots[0].float()
        maps.append(assign_pixels(dots, info, encoder.stride)[0])
    return maps, seconds


def compare(checkpoint: Path, runs: list[str], device: str) -> list[dict]:
    images = photos()
    reference, eager_seconds = groupings(load_encoder(checkpoint, "cpu"), images)
    pixels = sum(m.size for m in reference)
    rows = []
    for run in runs:
        runtime, _, precision = run.partition(":")
        encoder = load_encoder(checkpoint, device, precision=precision or "fp32")
        encoder.use_runtime(runtime)
        maps, seconds = groupings(encoder, images)
        differ = [int((a != b).sum()) for a, b in zip(maps, reference)]
        rows.append({
            "run": run,
            "device": device,
            "network_seconds": seconds,
            "speed_vs_cpu_eager": eager_seconds / seconds,
            "pixels_differing": sum(differ),
            "pixels": pixels,
            "photos_differing": sum(d > 0 for d in differ),
            "photos": len(images),
        })  # fmt: skip
        print(markdown_row(rows[-1]), flush=True)
    return rows


def markdown_row(row: dict) -> str:
    share = 100 * row["pixels_differing"] / row["pixels"]
    return (
        f"| {row['run']} | {row['device']} | {1000 * row['network_seconds'] / row['photos']:.1f}"
        f" | {row['speed_vs_cpu_eager']:.2f} x | {row['pixels_differing']:,} of "
        f"{row['pixels']:,} ({share:.4f} %) | {row['photos_differing']} of {row['photos']} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, help="encoder checkpoint")
    p.add_argument("--random-r50", action="store_true", help="ResNet-50, K 256 at random init")
    p.add_argument("--runs", nargs="+", default=["eager", "channels-last", "compile"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=Path("network_agreement.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint
        if args.random_r50:
            torch.manual_seed(0)
            cfg = ModelConfig()
            checkpoint = Path(scratch) / "r50_k256.pt"
            save_atomic(
                encoder_checkpoint(cfg, SlotConEncoder(cfg).state_dict(), seed=0), checkpoint
            )
        print(f"{checkpoint.name} on {cpu_name()}, torch {torch.__version__}, threads "
              f"{torch.get_num_threads()}; reference: eager fp32 on the CPU")  # fmt: skip
        print("| run | device | network ms / photo | speed | pixels differing | photos differing |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        rows = compare(checkpoint, args.runs, args.device)
    args.json.write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
