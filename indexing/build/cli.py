"""`python -m indexing build` (registered by indexing.cli): the flags of BuildConfig, then
indexing.build.pipeline.build_index.

Imports nothing heavy at module level beyond the config, so that `python -m indexing --help`
answers at once.
"""

from __future__ import annotations

import argparse
import json

from indexing.build.config import BuildConfig
from indexing.store.directory import MANIFEST
from indexing.store.faiss_index import INDEX_TYPES
from model.flags import add_config_flags, config_from_args
from model.runtimes import RUNTIMES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="extract every image's slots and write an index directory",
        description="Extract the slots of every image under --images with a SlotCon checkpoint "
        "and write an index (tables, faiss, assignment maps). Several processes: "
        "torchrun --nproc_per_node=N -m indexing build ...",
    )
    add_config_flags(
        p,
        BuildConfig,
        choices={"index_type": INDEX_TYPES, "runtime": RUNTIMES},
        metavars={"annotations": "JSON"},
    )


def run(args: argparse.Namespace) -> None:
    """Convert the flags to the BuildConfig at once (a value it refuses is a bad argument:
    argparse.ArgumentTypeError), build, print what was indexed."""
    try:
        cfg = config_from_args(BuildConfig, args)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    run_build(cfg)


def run_build(cfg: BuildConfig) -> None:
    from indexing.build.pipeline import build_index

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
