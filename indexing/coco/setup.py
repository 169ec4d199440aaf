"""COCO val2017's data and model: download, verify, unpack, check the model (the index is
indexing.coco.index's).

    prepare_data(cfg)        archives -> <root>/val2017, <root>/annotations/instances_val2017.json,
                             <root>/stuffthingmaps/val2017 (each skipped when already complete)
    resolve_checkpoint(cfg)  a local file or a URL (cached as <root>/checkpoints/<sha256 of
                             the URL, 12 hex>-<its last path part>) -> a checked checkpoint path
    record_checkpoint(cfg, checkpoint)  its absolute path -> <root>/checkpoints/last-checkpoint.txt

Every step refuses before it writes when something is wrong (disk space, a foreign folder, a
wrong file), with one line that says what to do; nothing the program did not write is removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from indexing.coco import archives as zips
from indexing.coco.config import CocoConfig
from indexing.coco.download import download, part_path
from indexing.coco.sources import COCO_VAL_ARCHIVES, Archive, with_mirror

Say = Callable[[str], None]
AUTHORS_MODELS = "https://github.com/CVMI-Lab/SlotCon#pretrained-models"
LAST_CHECKPOINT = "last-checkpoint.txt"  # in <root>/checkpoints/: the model of the last run


class NotEnoughSpace(OSError):
    """The disk under --root lacks the space the remaining steps need (nothing was written)."""


class NeedCheckpoint(RuntimeError):
    """No model was given: the message says where to get one and the command to run next."""


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def images_dir(root: Path) -> Path:
    return root / "val2017"


def annotations_file(root: Path) -> Path:
    return root / "annotations" / "instances_val2017.json"


def stuffthing_dir_for(image_root: Path) -> Path | None:
    """The stuffthingmaps folder this command unpacked beside an image folder (<root>/val2017
    -> <root>/stuffthingmaps/val2017, with its marker), else None: the default labels of
    `python -m indexing evaluate --protocol cocostuff27` for an index of <root>/val2017."""
    folder = Path(image_root).parent / "stuffthingmaps" / Path(image_root).name
    return folder if (folder / zips.UNPACKED_MARKER).is_file() else None


def prepare_data(
    cfg: CocoConfig, table: tuple[Archive, ...] | None = None, say: Say = print
) -> None:
    """Download, verify and unpack every archive of `table` (default: COCO_VAL_ARCHIVES) not yet
    unpacked under cfg.root."""
    root = cfg.root
    table = COCO_VAL_ARCHIVES if table is None else table
    table = with_mirror(table, cfg.mirror) if cfg.mirror else table
    todo = [a for a in table if not zips.is_unpacked(root, a)]
    for archive in table:
        if archive not in todo:
            say(f"{archive.name}: already verified and unpacked ({root / archive.target})")
    if not todo:
        return
    for archive in todo:  # a foreign folder in the way: refused before any download
        zips.check_free_to_unpack(root, archive)
    check_space(root, todo)
    for archive in todo:
        _prepare_one(cfg, archive, say)


def check_space(root: Path, todo: list[Archive]) -> None:
    """NotEnoughSpace unless the disk under `root` holds what is still to download plus the
    unpacked files (each archive's budget)."""
    needed = 0
    for archive in todo:
        zip_path = root / "downloads" / archive.filename
        have = zip_path.stat().st_size if zip_path.exists() else 0
        part = part_path(zip_path)
        have = have or (part.stat().st_size if part.exists() else 0)
        needed += max((archive.size or archive.approx_size) - have, 0) + archive.unpacked_budget
    free = free_bytes(root)
    if needed > free:
        raise NotEnoughSpace(
            f"not enough disk space: the COCO val2017 download needs about {_gb(needed)} free "
            f"under {root.absolute()}, and only {_gb(free)} is free there; free some space or "
            f"pass --root on another disk (nothing was downloaded)"
        )


def _prepare_one(cfg: CocoConfig, archive: Archive, say: Say) -> None:
    zip_path = cfg.root / "downloads" / archive.filename
    if not zip_path.exists():
        say(f"{archive.name}: downloading {archive.url}")
        download(archive.url, zip_path, archive.size, archive.approx_size, cfg.retries, say=say)
    say(f"{archive.name}: verifying {zip_path.name}")
    md5 = zips.verify(zip_path, archive)
    needed, free = zips.unpacked_bytes(zip_path, archive), free_bytes(cfg.root)
    if needed > free:
        raise NotEnoughSpace(
            f"not enough disk space to unpack {zip_path.name}: {_gb(needed)} needed under "
            f"{cfg.root.absolute()}, {_gb(free)} free; free some space and run again"
        )
    target = zips.unpack(zip_path, archive, cfg.root, md5)
    files = "file" if archive.members == 1 else "files"
    say(f"{archive.name}: {archive.members:,} {files} in {target}")
    if not cfg.keep_archives:
        zip_path.unlink()  # ours, verified and unpacked; its marker keeps the MD5


def resolve_checkpoint(cfg: CocoConfig, say: Say = print) -> Path:
    """The model file: cfg.checkpoint as given, or downloaded (with resume) when it is a URL
    into <root>/checkpoints/<sha256(url)[:12]>-<name>. NeedCheckpoint when none was given;
    CheckpointError when the file is not a SlotCon checkpoint (this project's or the authors'
    published layout)."""
    from model.checkpoint import CheckpointError, encoder_weights, read_checkpoint

    if not cfg.checkpoint:
        raise NeedCheckpoint(checkpoint_help(cfg))
    source = cfg.checkpoint
    if not source.startswith(("http://", "https://")):
        path = Path(source)
        encoder_weights(read_checkpoint(path), path.name)  # CheckpointError: a foreign file
        return path
    name = source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "checkpoint.pth"
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]  # two URLs, two files
    path = cfg.root / "checkpoints" / f"{digest}-{name}"
    if not path.exists():
        say(f"checkpoint: downloading {source}")
        download(source, path, retries=cfg.retries, say=say)
    try:
        encoder_weights(read_checkpoint(path), path.name)
    except CheckpointError as error:
        aside = path.with_name(path.name + zips.REJECTED_SUFFIX)
        os.replace(path, aside)  # ours: downloaded above or by an earlier run
        raise CheckpointError(
            f"{source} did not give a SlotCon checkpoint ({error}); kept as {aside}. A share "
            f"link (OneDrive) opens a web page: download the file in a browser and pass its path"
        ) from None
    return path


def record_checkpoint(cfg: CocoConfig, checkpoint: Path) -> Path:
    """Write the model's absolute path to <root>/checkpoints/last-checkpoint.txt (`make coco`
    starts the app with it); returns that file."""
    record = cfg.root / "checkpoints" / LAST_CHECKPOINT
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(f"{checkpoint.absolute()}\n")
    return record


def checkpoint_help(cfg: CocoConfig) -> str:
    """Where the authors publish their models, which file to take, the command to run next."""
    return (
        f"the data are ready under {cfg.root}; a model is needed to index them.\n"
        f"  The authors publish SlotCon's checkpoints at {AUTHORS_MODELS}\n"
        f"  (a OneDrive folder). Take the row 'SlotCon | COCO | 800 | ResNet-50', link\n"
        f"  'full ckpt' (not 'backbone only': the prototypes are needed), saved e.g. as "
        f"slotcon_coco_r50_800ep.pth.\n"
        f"  Then run:  python -m indexing coco --root {cfg.root} "
        f"--checkpoint slotcon_coco_r50_800ep.pth\n"
        f"  (or: make coco CHECKPOINT=slotcon_coco_r50_800ep.pth; a checkpoint of this project, "
        f"e.g. runs/coco/encoder.pt, works too)"
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"
