"""Command lines: python -m indexing {build, evaluate, figure, compare} (see --help of each).

    python -m indexing build --checkpoint assets/demo_encoder.pt --images data/scenes/val \\
        --annotations data/scenes/annotations/instances_val.json --out data/index-demo
    torchrun --nproc_per_node=4 -m indexing build ...        # one process per GPU
    python -m indexing evaluate --index data/index-demo --out-json scores.json
    python -m indexing figure --index data/index-demo --out prototypes.png --k 5
    python -m indexing compare --index data/index-demo --index data/index-other --out cmp/

Bad input (missing checkpoint, empty folder, an index of another model ...) prints
`error: ...` and exits with status 1; bad arguments exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from indexing import compare_cli
from indexing.config import BuildConfig
from indexing.search import INDEX_TYPES
from indexing.store import MANIFEST
from model.flags import add_config_flags, config_from_args


def _add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="extract every image's slots and write an index directory",
        description="Extract the slots of every image under --images with a SlotCon checkpoint "
        "and write an index (tables, faiss, assignment maps). Several processes: "
        "torchrun --nproc_per_node=N -m indexing build ...",
    )
    add_config_flags(
        p, BuildConfig, choices={"index_type": INDEX_TYPES}, metavars={"annotations": "JSON"}
    )


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="unsupervised segmentation scores (Hungarian and majority vote)",
        description="Score the index's prototype maps against annotations: mIoU and pixel "
        "accuracy with Hungarian matching (PiCIE/STEGO) and with majority vote; the "
        "cocostuff27 protocol also scores PiCIE's clustering of pixel features.",
    )
    p.add_argument("--index", type=Path, required=True, help="index directory")
    p.add_argument(
        "--annotations",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="COCO instances JSON [+ COCO-Stuff stuff JSON]; default: those of the build",
    )
    p.add_argument(
        "--protocol",
        choices=("index", "cocostuff27"),
        default="index",
        help="index: stored maps at image resolution, the annotations' classes; cocostuff27: "
        "curated val2017 list, 320 px centre crops, 27 coarse classes (needs --checkpoint)",
    )
    p.add_argument(
        "--authors-crop",
        action="store_true",
        help="cocostuff27: resize 256 + centre crop 224 (the authors' visualisation) instead "
        "of PiCIE's 320 + 320; for comparing with the authors' figures, not the paper's table",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="cocostuff27: fp32 (recommended: the paper's numbers are fp32); bf16 autocast is "
        "faster on GPUs and moves some pixels to another prototype (docs/FAITHFULNESS.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="cocostuff27: seed of the k-means")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="the index's checkpoint: checked against it; cocostuff27 recomputes dots with it",
    )
    p.add_argument(
        "--stuffthing-dir",
        type=Path,
        default=None,
        help="cocostuff27: COCO-Stuff stuffthingmaps PNG folder (e.g. stuffthingmaps/val2017) "
        "instead of JSON annotations",
    )
    p.add_argument(
        "--curated",
        type=Path,
        default=None,
        help="cocostuff27: image list (one zero-padded id a line); default the 2,175-image "
        "curated list of IIC / PiCIE / STEGO",
    )
    _add_image_root(p)
    p.add_argument("--batch-size", type=int, default=16, help="cocostuff27: images per pass")
    p.add_argument("--device", default="", help="cocostuff27: cpu | cuda (default: GPU if any)")
    p.add_argument("--out-json", type=Path, default=None, help="write the scores as JSON")
    p.add_argument("--out-csv", type=Path, default=None, help="write per-class IoU rows as CSV")


def _add_figure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "figure",
        help="PNG grid of prototypes and their top segments (the paper's Figure 3)",
        description="One row per prototype, its top-k segments by score with the prototype's "
        "mask in red (alpha 0.6).",
    )
    p.add_argument("--index", type=Path, required=True, help="index directory")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument(
        "--prototypes", type=int, nargs="+", default=None, help="prototype ids (default: sampled)"
    )
    p.add_argument("--k", type=int, default=5, help="segments per prototype; 5 as in the paper")
    p.add_argument(
        "--sample", type=int, default=8, help="prototypes drawn when --prototypes is not given"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the prototype sample")
    p.add_argument("--cell", type=int, default=128, help="thumbnail side in pixels")
    _add_image_root(p)


def _add_image_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="the collection's image folder, when it moved since the build (default: the "
        "folder recorded in the index)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m indexing",
        description="Index an image collection with a SlotCon model, score it, draw it.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{build,evaluate,figure,compare}"
    )
    _add_build(sub)
    _add_evaluate(sub)
    _add_figure(sub)
    compare_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status: 0 done, 1 a known error (`error: ...` on
    stderr), 2 bad arguments, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "build":
        try:  # converted to the config at once: a value it refuses is a bad argument
            cfg = config_from_args(BuildConfig, args)
        except ValueError as error:
            parser.error(str(error))
    commands = {"evaluate": run_evaluate, "figure": run_figure, "compare": compare_cli.run}
    try:
        if args.command == "build":
            run_build(cfg)
        else:
            commands[args.command](args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


def run_build(cfg: BuildConfig) -> None:
    from indexing.build import build_index

    out = build_index(cfg)
    if out is None:  # not rank 0 of several processes
        return
    manifest = json.loads((out / MANIFEST).read_text())
    counts, seconds = manifest["counts"], manifest["build"]["seconds"]
    print(
        f"indexed {counts['images']} images ({counts['slots']} slots, {counts['skipped']} "
        f"skipped) into {out} in {seconds:.1f} s"
    )
    for item in manifest["skipped"][:10]:
        print(f"  skipped {item['path']}: {item['reason']}")


def run_evaluate(args: argparse.Namespace) -> None:
    from indexing import evaluate
    from indexing.cocostuff import COCOSTUFF27_CLASSES, COCOSTUFF27_IS_THING
    from indexing.concept_index import ConceptIndex
    from indexing.picie import picie_scores

    index = ConceptIndex.open(
        args.index, checkpoint=args.checkpoint, gpu=False, image_root=args.image_root
    )
    annotations = args.annotations or [Path(p) for p in index.manifest.get("annotations", [])]
    if args.protocol == "index":
        counts, labels, extra, cluster_counts = *_evaluate_index(index, annotations), None
    else:
        counts, labels, extra, cluster_counts = _evaluate_cocostuff27(args, index, annotations)
    if extra["images_evaluated"] == 0:
        raise ValueError("no image could be evaluated (no indexed image has labels)")
    if labels is not None:
        names, is_thing = labels.class_names, labels.class_is_thing
    else:
        names, is_thing = list(COCOSTUFF27_CLASSES), list(COCOSTUFF27_IS_THING)
    result = {"protocol": args.protocol, "index": str(index.root)}
    result.update(evaluate.scores_dict(counts, index.prototype_vectors(), names, is_thing))
    if cluster_counts is not None:
        result["picie"] = picie_scores(cluster_counts).to_dict(names, is_thing)
    result.update(extra, annotations=[str(p) for p in annotations] if labels else [])
    print(evaluate.format_table(result))
    print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in extra.items()))
    if args.out_json:
        args.out_json.write_text(json.dumps(result, indent=1) + "\n")
    if args.out_csv:
        evaluate.write_csv(result, args.out_csv, is_thing)


def _evaluate_index(index, annotations: list[Path]) -> tuple:
    """The "index" protocol: (K, L) counts of the stored maps, the labels, extra fields."""
    from indexing import evaluate
    from indexing.collection import load_labels

    if not annotations:
        raise ValueError(f"{index.root} was built without annotations: give --annotations")
    labels = load_labels(annotations)
    counts, evaluated, unlabelled = evaluate.index_confusion(index, labels)
    return counts, labels, {"images_evaluated": evaluated, "images_without_labels": unlabelled}


def _evaluate_cocostuff27(args: argparse.Namespace, index, annotations: list[Path]) -> tuple:
    """The "cocostuff27" protocol: (K, 27) counts, the labels (None with --stuffthing-dir),
    extra fields, and PiCIE's (27, 27) cluster counts."""
    from indexing import protocol
    from indexing.collection import load_labels
    from indexing.views import AUTHORS_VIEW, PICIE_VIEW
    from model.checkpoint import load_encoder

    if args.checkpoint is None:
        raise ValueError("--protocol cocostuff27 needs --checkpoint (dots are recomputed)")
    if not (annotations or args.stuffthing_dir):
        raise ValueError(
            "cocostuff27 needs labels: --annotations instances.json stuff.json "
            "(COCO-Stuff ids) or --stuffthing-dir"
        )
    encoder = load_encoder(args.checkpoint, args.device or None, precision=args.precision)
    labels = None if args.stuffthing_dir else load_labels(annotations, coarse=True)
    if labels is None and not args.stuffthing_dir.is_dir():
        raise FileNotFoundError(f"stuffthingmaps folder not found: {args.stuffthing_dir}")
    curated = protocol.read_curated(args.curated or protocol.CURATED_LIST)
    view = AUTHORS_VIEW if args.authors_crop else PICIE_VIEW
    run = protocol.cocostuff27(
        index, encoder, curated, labels, args.stuffthing_dir, view, args.batch_size, args.seed
    )
    extra = {
        "images_evaluated": run.evaluated,
        "images_missing": run.missing,
        "view": {"resize": view.resize, "crop": view.crop},
        "precision": args.precision,
    }
    return run.prototype_counts, labels, extra, run.cluster_counts


def run_figure(args: argparse.Namespace) -> None:
    from indexing.concept_index import ConceptIndex
    from indexing.figure import prototype_figure, sample_prototypes

    if args.k < 1 or args.cell < 16 or args.sample < 1:
        raise ValueError("--k and --sample must be >= 1 and --cell >= 16")
    index = ConceptIndex.open(args.index, gpu=False, image_root=args.image_root)
    prototypes = args.prototypes or sample_prototypes(index, args.sample, args.seed)
    if not prototypes:
        raise ValueError(f"{index.root} has no slots to draw")
    figure = prototype_figure(index, prototypes, args.k, args.cell)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, format="PNG")
    print(f"wrote {args.out} ({figure.width} x {figure.height} px, prototypes {prototypes})")
