"""`python -m indexing figure` (registered by indexing.cli): the paper's Figure 3 of an index as
a PNG (indexing.figure draws it).

Imports nothing heavy at module level, so that `python -m indexing --help` answers at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="the collection's image folder, when it moved since the build (default: the "
        "folder recorded in the index)",
    )


def run(args: argparse.Namespace) -> None:
    from indexing.figure import prototype_figure, sample_prototypes
    from indexing.query.concept_index import ConceptIndex

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
