"""Index build speed and query latency, from image files on disk to a finished index.

    python bench/index_build.py --sizes 200 1000                    # CPU, demo-sized model
    python bench/index_build.py --device cuda --coco-sized          # 5,000 x 640x480, R50 K 256
    python bench/index_build.py --coco-sized --mixed-sizes --coco-images 300 --model demo

CPU mode: the built-in scenes (192 px) indexed with a randomly initialised model of the demo
preset's shape (ResNet-18 x 0.25, stride 8, K 32, D 32). --coco-sized: 5,000 generated 640 x 480
JPEGs (smooth random colour fields) indexed at 448 px with the paper's shape (ResNet-50, K 256,
D 256) at random weights (timings do not depend on the weights); --mixed-sizes draws each
image's size from frequent COCO sizes (landscape, portrait, square: MIXED_SIZES, not COCO's
exact distribution), where batches of one padded shape matter; --model demo uses the demo
preset's shape on them (at its own 192 px shorter side). Build time is the whole
`indexing.build_index` call (decode, forward, maps, tables, faiss, atomic rename). Query
latency: p50 / p95 over --queries random calls of top_segments(k=10), similar(slot, k=10) and
similar(slot, k=10, prototype=p). Prints Markdown table rows and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from build_stages import STAGES, stage_split  # bench/build_stages.py, beside this script
from machine import cpu_name  # bench/machine.py, beside this script
from PIL import Image

from indexing import BuildConfig, ConceptIndex, build_index
from model.checkpoint import encoder_checkpoint, save_atomic
from model.config import DEMO, ModelConfig
from model.encoder import SlotConEncoder
from model.scenes import write_scenes

HEADER = (
    "| collection | images | slots | build s | images/s | top_segments p50 / p95 ms "
    "| similar p50 / p95 ms | similar+prototype p50 / p95 ms |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def random_checkpoint(cfg: ModelConfig, path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_atomic(encoder_checkpoint(cfg, SlotConEncoder(cfg).state_dict(), seed=seed), path)
    return path


# (W, H) of frequent COCO image sizes, repeated about as often as each other in val2017
MIXED_SIZES = [(640, 480)] * 6 + [(640, 427)] * 3 + [(480, 640)] * 2 + [
    (427, 640), (640, 428), (640, 426), (500, 375), (612, 612), (640, 360), (375, 500),
    (640, 512), (640, 640),
]  # fmt: skip


def _coco_like(job: tuple[str, int, bool]) -> None:
    """One smooth random JPEG (low-frequency colour field + fine noise), 640 x 480 or of a
    size drawn from MIXED_SIZES."""
    folder, i, mixed = job
    rng = np.random.default_rng(i)
    W, H = MIXED_SIZES[rng.integers(len(MIXED_SIZES))] if mixed else (640, 480)
    field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((W, H), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (H, W, 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
        Path(folder) / f"{i:012d}.jpg", quality=90
    )


def coco_sized_images(folder: Path, count: int, mixed: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    todo = [
        (str(folder), i, mixed)
        for i in range(1, count + 1)
        if not (folder / f"{i:012d}.jpg").exists()
    ]
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        pool.map(_coco_like, todo, chunksize=16)
    return folder


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    ms = 1000 * np.asarray(seconds)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def query_latency(index: ConceptIndex, queries: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    present = index.prototypes().query("slots > 0")["prototype"].to_numpy()
    slot_ids = rng.integers(0, index.num_slots, queries)
    protos = rng.choice(present, queries)
    calls = {
        "top_segments": lambda i: index.top_segments(int(protos[i]), 10),
        "similar": lambda i: index.similar(slot_id=int(slot_ids[i]), k=10),
        "similar_prototype": lambda i: index.similar(
            slot_id=int(slot_ids[i]), k=10, prototype=int(protos[i])
        ),
    }
    result = {}
    for name, call in calls.items():
        for i in range(min(10, queries)):  # warm-up
            call(i)
        times = []
        for i in range(queries):
            start = time.perf_counter()
            call(i)
            times.append(time.perf_counter() - start)
        result[name] = percentiles(times)
    return result


def run_one(name: str, images: Path, checkpoint: Path, out: Path, args) -> dict:
    config = BuildConfig(
        checkpoint=checkpoint,
        images=images,
        out=out,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        precision=args.precision,
        # only when asked: the same script times trees from before --runtime existed
        **({"runtime": args.runtime} if args.runtime != "eager" else {}),
    )
    start = time.perf_counter()
    build_index(config)
    seconds = time.perf_counter() - start
    index = ConceptIndex.open(out)
    latency = query_latency(index, args.queries)
    counts = index.manifest["counts"]
    row = {
        "collection": name,
        "images": counts["images"],
        "slots": counts["slots"],
        "build_seconds": seconds,
        "images_per_second": counts["images"] / seconds,
        "latency_ms": latency,
    }
    print(markdown_row(row), flush=True)
    if args.stages:
        row["stages"] = stage_split(
            images, checkpoint, args.batch_size, args.device, args.precision, args.runtime
        )
        print(STAGES_HEADER + "\n" + stages_row(name, row), flush=True)
    return row


STAGES_HEADER = (
    "| collection | decode | resize + batching | forward | grouping + pooling | maps + tables "
    "| network only img/s | build img/s | build / network |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def stages_row(name: str, row: dict) -> str:
    """Milliseconds per image of each stage alone, then the build's rate against the network's."""
    split = row["stages"]
    network = split["network_images_per_second"]
    cells = [
        name,
        *(f"{split['ms_per_image'][stage]:.1f} ms" for stage in STAGES),
        f"{network:.2f}",
        f"{row['images_per_second']:.2f}",
        f"{100 * row['images_per_second'] / network:.0f} %",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown_row(row: dict) -> str:
    lat = row["latency_ms"]
    cells = [
        row["collection"],
        f"{row['images']:,}",
        f"{row['slots']:,}",
        f"{row['build_seconds']:.1f}",
        f"{row['images_per_second']:.1f}",
        *(
            f"{lat[q][0]:.2f} / {lat[q][1]:.2f}"
            for q in ("top_segments", "similar", "similar_prototype")
        ),
    ]
    return "| " + " | ".join(cells) + " |"


def machine(device: str) -> dict:
    info = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[200, 1000], help="scenes per run")
    p.add_argument("--coco-sized", action="store_true", help="5,000 x 640x480 JPEGs, R50 K 256")
    p.add_argument("--coco-images", type=int, default=5000, help="--coco-sized: image count")
    p.add_argument(
        "--mixed-sizes", action="store_true", help="--coco-sized: sizes from MIXED_SIZES"
    )
    p.add_argument(
        "--model",
        choices=("r50", "demo"),
        default="r50",
        help="--coco-sized: r50 (the paper's ResNet-50, K 256) or demo (the demo preset's shape)",
    )
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="this model instead of random weights"
    )
    p.add_argument(
        "--stages",
        action="store_true",
        help="also time each stage alone and the network on its own (bench/build_stages.py)",
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--precision", default="fp32", help="fp32 | bf16 (the build's --precision)")
    p.add_argument("--runtime", default="eager", help="the build's --runtime (model.runtimes)")
    p.add_argument("--batch-size", type=int, default=16, help="16 on CPU; 64 on a GPU for R50")
    p.add_argument("--workers", type=int, default=2, help="decoding processes; 8 with a GPU")
    p.add_argument("--queries", type=int, default=200, help="timed calls per query kind")
    p.add_argument("--work", type=Path, default=None, help="keep data here (default: temp)")
    p.add_argument("--json", type=Path, default=Path("index_build.json"), help="write results")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="index-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        print(HEADER, flush=True)
        if args.coco_sized:
            kind = "mixed" if args.mixed_sizes else "640x480"
            images = coco_sized_images(work / f"coco-{kind}", args.coco_images, args.mixed_sizes)
            if args.checkpoint is not None:
                checkpoint, model = args.checkpoint, args.checkpoint.name
            elif args.model == "r50":
                checkpoint = random_checkpoint(ModelConfig(), work / "r50_k256.pt")
                model = "R50 K 256"
            else:
                checkpoint = random_checkpoint(DEMO.model, work / "demo_shape.pt")
                model = f"demo model (K {DEMO.model.num_prototypes}), 192 px"
            name = f"{args.coco_images:,} x {kind} JPEG, {model}, {args.precision} {args.runtime}"
            rows.append(run_one(name, images, checkpoint, work / "index", args))
        else:
            checkpoint = args.checkpoint or random_checkpoint(DEMO.model, work / "demo_shape.pt")
            model = args.checkpoint.name if args.checkpoint else "demo shape, random init"
            for size in args.sizes:
                write_scenes(work / f"scenes{size}", size, 192, seed=1, split="val")
                images = work / f"scenes{size}" / "val"
                name = f"scenes 192 px, {model}"
                rows.append(run_one(name, images, checkpoint, work / f"index{size}", args))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = {"machine": machine(args.device), "args": vars(args) | {"work": str(work)}}
    result["rows"] = rows
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
