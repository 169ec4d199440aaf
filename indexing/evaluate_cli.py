"""`python -m indexing evaluate` (registered by indexing.cli): an index's prototype maps scored
against annotations. Opens the index (indexing.query) and scores it (indexing.scores): the
"index" protocol over the stored maps, or the "cocostuff27" protocol of the paper's table
(docs/COCOSTUFF27.md).

Imports nothing heavy at module level, so that `python -m indexing --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    _add_cocostuff27(p)
    _add_image_root(p)
    p.add_argument("--batch-size", type=int, default=16, help="cocostuff27: images per pass")
    p.add_argument("--device", default="", help="cocostuff27: cpu | cuda (default: GPU if any)")
    p.add_argument("--out-json", type=Path, default=None, help="write the scores as JSON")
    p.add_argument("--out-csv", type=Path, default=None, help="write per-class IoU rows as CSV")


def _add_cocostuff27(p: argparse.ArgumentParser) -> None:
    """The flags of the cocostuff27 protocol (and --checkpoint, which both protocols check)."""
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
        "instead of JSON annotations; default without --annotations: the one `python -m "
        "indexing coco` unpacked beside the index's images",
    )
    p.add_argument(
        "--curated",
        type=Path,
        default=None,
        help="cocostuff27: image list (one zero-padded id a line); default the 2,175-image "
        "curated list of IIC / PiCIE / STEGO",
    )


def _add_image_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="the collection's image folder, when it moved since the build (default: the "
        "folder recorded in the index)",
    )


def run(args: argparse.Namespace) -> None:
    from indexing.query.concept_index import ConceptIndex
    from indexing.scores import evaluate
    from indexing.scores.cocostuff import COCOSTUFF27_CLASSES, COCOSTUFF27_IS_THING
    from indexing.scores.picie import picie_scores

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
    from indexing.scores import evaluate
    from indexing.scores.annotations import load_labels

    if not annotations:
        raise ValueError(f"{index.root} was built without annotations: give --annotations")
    labels = load_labels(annotations)
    counts, evaluated, unlabelled = evaluate.index_confusion(index, labels)
    return counts, labels, {"images_evaluated": evaluated, "images_without_labels": unlabelled}


def _evaluate_cocostuff27(args: argparse.Namespace, index, annotations: list[Path]) -> tuple:
    """The "cocostuff27" protocol: (K, 27) counts, the labels (None with --stuffthing-dir),
    extra fields, and PiCIE's (27, 27) cluster counts."""
    from indexing.coco.setup import stuffthing_dir_for
    from indexing.scores import protocol
    from indexing.scores.annotations import load_labels
    from indexing.store.views import AUTHORS_VIEW, PICIE_VIEW
    from model.checkpoint import load_encoder

    if args.checkpoint is None:
        raise ValueError("--protocol cocostuff27 needs --checkpoint (dots are recomputed)")
    if args.stuffthing_dir is None and args.annotations is None:  # what `indexing coco` unpacked
        args.stuffthing_dir = stuffthing_dir_for(index.image_root)
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
