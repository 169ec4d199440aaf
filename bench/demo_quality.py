"""Does training discover the scene classes? Trained checkpoint vs the same network at random init.

    python bench/demo_quality.py --checkpoint assets/demo_encoder.pt --images 300 --seed 1 \
        [--style natural|hard]

Generates held-out scenes (a seed the model never saw), groups every image at image resolution
and scores the assignment maps against the exact labels with both mappings of
indexing.scores.metrics (majority vote; Hungarian after clustering the prototypes). Prints a
Markdown table, the per-class IoU, the object classes found (IoU >= 30), which pairs of classes
that share a palette (natural style, model.scenes.palettes) are split, the stuff classes under
IoU 60, and a linear probe of the features (bench/linear_probe.py), and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from linear_probe import probe  # bench/linear_probe.py, beside this script
from tqdm import tqdm

from indexing.scores.groundtruth import CocoLabels
from indexing.scores.metrics import ConfusionAccumulator, hungarian_scores, majority_vote_scores
from model import SlotConEncoder, load_encoder
from model.data import load_rgb
from model.scenes import (
    DEFAULT_STYLE,
    PALETTES,
    STYLES,
    THING_CLASSES,
    find_complete,
    palette_of,
    write_scenes,
)

OBJECT_FOUND_IOU = 30  # a thing class counts as found at this IoU (percent), majority vote
STUFF_BAR_IOU = 60  # every stuff class of the demo model should reach this IoU (percent)


def palette_pairs() -> list[tuple[str, str, str]]:
    """(palette name, class, class) for every pair of thing classes that share a palette."""
    pairs: dict[int, list[str]] = {}
    for cls, name in enumerate(THING_CLASSES):
        pairs.setdefault(palette_of(cls), []).append(name)
    return [(PALETTES[p][0], *names) for p, names in sorted(pairs.items())]


def split_pairs(per_class_iou: dict[str, float]) -> list[tuple[str, str, str, bool]]:
    """Each palette pair with whether both of its classes are found (IoU >= OBJECT_FOUND_IOU):
    then shape and pattern, not colour, told them apart."""
    return [
        (palette, a, b, min(per_class_iou[a], per_class_iou[b]) >= OBJECT_FOUND_IOU)
        for palette, a, b in palette_pairs()
    ]


def print_pairs_and_stuff(result: dict, labels: CocoLabels) -> None:
    """The palette pairs that split (result["palette_pairs_split"]) and the stuff classes under
    the bar, majority vote."""
    per_class = result["majority"]["per_class_iou"]
    rows = result["palette_pairs_split"]
    print(f"palette pairs split (both classes at IoU >= {OBJECT_FOUND_IOU}): ", end="")
    print(f"{sum(r[3] for r in rows)} of {len(rows)}")
    for palette, a, b, split in rows:
        print(f"  {palette}: {a} {per_class[a]:.0f} / {b} {per_class[b]:.0f}" + " split" * split)
    stuff = [c for c, t in zip(labels.class_names, labels.class_is_thing) if not t]
    low = [f"{c} {per_class[c]:.0f}" for c in stuff if per_class[c] < STUFF_BAR_IOU]
    print(f"stuff classes under IoU {STUFF_BAR_IOU}: {', '.join(low) or 'none'}")


def score_encoder(encoder: SlotConEncoder, labels: CocoLabels, image_dir: Path) -> dict:
    """Both mappings' scores of `encoder` on every image of `labels` (percent)."""
    acc = ConfusionAccumulator(encoder.num_prototypes, len(labels.class_names))
    for image_id in tqdm(labels.image_ids, desc="group", leave=False):
        info = labels.image_info(image_id)
        grouping = encoder.group(load_rgb(image_dir / info.file_name))
        acc.update(grouping.assignment, labels.label_map(image_id))
    vectors = encoder.prototypes.cpu().numpy()
    result = {}
    for name, scores in (
        ("majority", majority_vote_scores(acc.counts)),
        ("hungarian", hungarian_scores(acc.counts, vectors)),
    ):
        reached = int((scores.per_class_iou > 0).sum())
        things = [iou for iou, t in zip(scores.per_class_iou, labels.class_is_thing) if t]
        result[name] = {
            "objects_found": int(sum(100 * iou >= OBJECT_FOUND_IOU for iou in things)),
            "miou": 100 * scores.miou,
            "pixel_accuracy": 100 * scores.pixel_accuracy,
            "classes_reached": reached,
            "per_class_iou": {
                c: round(100 * float(iou), 1)
                for c, iou in zip(labels.class_names, scores.per_class_iou, strict=True)
            },
        }
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="trained encoder to judge")
    parser.add_argument("--images", type=int, default=300, help="held-out scenes (300: ~1 min)")
    parser.add_argument("--size", type=int, default=192, help="scene size (demo: 192)")
    parser.add_argument("--seed", type=int, default=1, help="scene seed; training used 0")
    parser.add_argument(
        "--style",
        choices=sorted(STYLES),
        default=DEFAULT_STYLE,
        help="scene style (model.scenes): natural (default, the demo's) or hard",
    )
    parser.add_argument(
        "--scenes",
        default="",
        help="where to keep the scenes (default: temp); one folder a style",
    )
    parser.add_argument("--init-seed", type=int, default=0, help="seed of the random-init twin")
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument(
        "--no-random-init",
        action="store_true",
        help="score the checkpoint only (quicker, for checkpoints during a run)",
    )
    parser.add_argument(
        "--probe",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="linear probe on the first 160 scenes (120 train, 40 test; default: yes)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = Path(args.scenes or tempfile.mkdtemp(prefix="scenes-heldout-"))
    ann = find_complete(root, args.images, args.size, args.seed, "val", args.style)
    ann = ann or write_scenes(root, args.images, args.size, args.seed, "val", style=args.style)
    labels = CocoLabels(ann)
    trained = load_encoder(args.checkpoint, device="cpu")
    encoders = {"trained": trained}
    if not args.no_random_init:
        torch.manual_seed(args.init_seed)
        encoders["random init"] = SlotConEncoder(trained.cfg, trained.input_size)
    rows = {}
    for name, encoder in encoders.items():
        rows[name] = score_encoder(encoder, labels, root / "val")
        if args.probe:
            rows[name]["probe"] = probe(encoder, labels, root / "val")
    things = sum(labels.class_is_thing)
    print(f"held-out scenes: {args.images} {args.style} images, seed {args.seed}, {args.size} px")
    print(
        "| model | majority mIoU | majority pAcc | Hungarian mIoU | Hungarian pAcc | "
        f"objects at IoU >= {OBJECT_FOUND_IOU} | probe: object px (backbone / projector) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        m, h = r["majority"], r["hungarian"]
        p = r.get("probe")
        probed = (
            p and f"{p['backbone']['object_pixels']:.0f} / {p['projector']['object_pixels']:.0f}"
        )
        print(
            f"| {name} | {m['miou']:.1f} | {m['pixel_accuracy']:.1f} | {h['miou']:.1f} | "
            f"{h['pixel_accuracy']:.1f} | {m['objects_found']} / {things} | "
            f"{probed or '-'} |"
        )
    print("\nper-class IoU, majority vote (" + " / ".join(rows) + "):")
    per_class = [rows[k]["majority"]["per_class_iou"] for k in rows]
    print(", ".join(f"{c} " + " / ".join(f"{r[c]:.0f}" for r in per_class) for c in per_class[0]))
    for r in rows.values():
        r["palette_pairs_split"] = [
            list(row) for row in split_pairs(r["majority"]["per_class_iou"])
        ]
    print_pairs_and_stuff(rows["trained"], labels)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
