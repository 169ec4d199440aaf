"""`python -m indexing compare --index A --index B [--out DIR]` (registered by indexing.cli).

Imports nothing heavy at module level, so that `python -m indexing --help` answers at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="correspondence of two indexes of the same images (two checkpoints)",
        description="Count the pixels that prototype a of index A and prototype b of index B "
        "share over the whole collection; IoU per pair, a one-to-one Hungarian matching, each "
        "prototype's best partner and the agreement of the two groupings (normalised MI).",
    )
    p.add_argument(
        "--index",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="give it twice: --index A --index B (indexes of the same images; K may differ)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for correspondence.parquet, partners.parquet and summary.json (new, "
        "empty or an earlier comparison; default: print the summary only)",
    )
    p.add_argument("--top", type=int, default=10, help="matched pairs printed (default 10)")


def run(args: argparse.Namespace) -> None:
    """`python -m indexing compare`: errors are ValueError / FileNotFoundError (cli prints)."""
    from indexing.compare import correspondence as compare
    from indexing.query.concept_index import ConceptIndex
    from model.outdir import check_output_dir

    if len(args.index) != 2:
        raise ValueError(f"give --index exactly twice (A and B), not {len(args.index)} times")
    if args.out is not None:
        check_output_dir(args.out, compare.is_compare_dir, "a comparison")
    index_a, index_b = (ConceptIndex.open(d, gpu=False) for d in args.index)
    result = compare.correspondence(index_a, index_b)
    info = compare.summary(result, index_a, index_b)
    print(compare.format_summary(info, args.top))
    if args.out is not None:
        written = compare.write_outputs(args.out, result, index_a, index_b)
        print(f"wrote {', '.join(p.name for p in written)} into {args.out}")
