"""`python -m indexing coco` (registered by indexing.cli): COCO val2017 and its index in one
command (`make coco`).

    python -m indexing coco --checkpoint slotcon_coco_r50_800ep.pth     # data/coco, data/index-coco
    python -m indexing coco --root /big/disk/coco --checkpoint https://host/encoder.pt

Order: a local checkpoint is checked first (a wrong file stops it before any download); then
the archives are downloaded, verified and unpacked (each skipped when already done); then the
checkpoint (a URL is downloaded here; none: where to get one, and exit status 1), its absolute
path recorded in <root>/checkpoints/last-checkpoint.txt (`make coco` starts the app with it);
then the expected build time and the build (skipped when the index is up to date); last, the
commands to explore and score it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from indexing.coco.config import CocoConfig
from model.flags import add_config_flags, config_from_args
from model.runtimes import RUNTIMES


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `coco` subcommand of `python -m indexing`."""
    p = sub.add_parser(
        "coco",
        help="download, verify and unpack COCO val2017 (+ stuff maps), then index it",
        description="COCO val2017 in one command: the images, the 2017 instance annotations and "
        "COCO-Stuff's stuffthingmaps of val2017 from their official locations (resumable, "
        "checked against the published sizes and MD5s, unpacked atomically, skipped when done), "
        "then the index with annotations, then the command that starts the app.",
    )
    add_config_flags(
        p,
        CocoConfig,
        choices={"runtime": RUNTIMES},
        metavars={"checkpoint": "FILE_OR_URL", "mirror": "URL"},
    )


def run(args: argparse.Namespace) -> None:
    """Convert the flags to the CocoConfig at once (a value it refuses is a bad argument:
    argparse.ArgumentTypeError), then the whole chain."""
    try:
        cfg = config_from_args(CocoConfig, args)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    run_coco(cfg)


def run_coco(cfg: CocoConfig, table: tuple | None = None, say=print) -> Path:
    """The whole chain; returns the index directory. `table`: the archives (default
    indexing.coco.sources.COCO_VAL_ARCHIVES). Raises the module errors (one line each):
    NotEnoughSpace, DownloadError, ArchiveError, CheckpointError, NeedCheckpoint."""
    from indexing.coco.index import build_coco_index
    from indexing.coco.setup import prepare_data, record_checkpoint, resolve_checkpoint

    local = cfg.checkpoint and not cfg.checkpoint.startswith(("http://", "https://"))
    checkpoint = resolve_checkpoint(cfg, say) if local else None
    prepare_data(cfg, table, say=say)
    checkpoint = checkpoint or resolve_checkpoint(cfg, say)
    record_checkpoint(cfg, checkpoint)  # `make coco` starts the app with it
    out = build_coco_index(cfg, checkpoint, say)
    say(next_steps(out, checkpoint))
    return out


def next_steps(out: Path, checkpoint: Path) -> str:
    """The commands to explore and to score the index."""
    return (
        f"explore it:  python app.py --index {out} --checkpoint {checkpoint}\n"
        f"score it:    python -m indexing evaluate --index {out} --protocol cocostuff27 "
        f"--checkpoint {checkpoint}"
    )
