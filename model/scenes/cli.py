"""The command line of the built-in scenes: ``python -m model.scenes --out DIR ...``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from model.scenes.dataset import find_complete, write_scenes
from model.scenes.render import DEFAULT_STYLE, MIN_SIZE, STYLES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.scenes",
        description="Write the built-in synthetic scenes: JPEG images + COCO instances JSON (RLE).",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory (COCO layout): new, empty or a scenes data set (any other folder "
        "is refused); rerunning with the same parameters is a no-op",
    )
    p.add_argument(
        "--images",
        type=int,
        default=2000,
        help="number of images; 2000 suit a small CPU model, 150-500 an evaluation split",
    )
    p.add_argument(
        "--size",
        type=int,
        default=192,
        help=f"image side in px (>= {MIN_SIZE}); 192 recommended: the textures are designed "
        "at 192 and lose detail below 128",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="data set seed; use a different seed for the evaluation split than for training",
    )
    p.add_argument(
        "--split",
        default="train",
        help="split name: images go to OUT/SPLIT, masks to OUT/annotations/instances_SPLIT.json",
    )
    p.add_argument(
        "--style",
        choices=sorted(STYLES),
        default=DEFAULT_STYLE,
        help="natural (default): each object class has a palette shared with one other class and "
        "objects cover about a third of the pixels, as in photographs; hard: random colours per "
        "object and small objects (about 14 %% of the pixels), the generator's first version",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes; one per CPU core (the output does not depend on it)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; 0 when the data set is written or already complete. Bad arguments
    and unwritable outputs exit 2 with a message (argparse's error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    if args.size < MIN_SIZE:
        parser.error(f"--size must be at least {MIN_SIZE} px (192 recommended)")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    done = find_complete(args.out, args.images, args.size, args.seed, args.split, args.style)
    if done is not None:
        print(f"{args.out}: data set already complete for these parameters ({done}); nothing to do")
        return 0
    start = time.perf_counter()
    try:
        path = write_scenes(
            args.out, args.images, args.size, args.seed, args.split, args.workers, args.style
        )
    except (OSError, ValueError) as e:
        parser.error(f"cannot write {args.out}: {e}")
    print(
        f"wrote {args.images} {args.style} images to {args.out / args.split} and {path} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0
