"""Verify a downloaded archive against the table, and unpack part of it atomically.

Unpacking writes into `<root>/.coco-staging-<name>/` (marked as this program's by a file written
first), puts a marker `.coco-unpacked.json` (the archive's name, MD5, member count and the
files it wrote) beside the files, and only then renames the folder to its target: a target
folder with its marker is complete, one without it was never made by this program and is not
touched. Unpacking again removes or replaces only the files the marker lists (a single-file
archive part, the instances JSON, replaces just that file in a folder that may hold others).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from indexing.coco.sources import Archive

UNPACKED_MARKER = ".coco-unpacked.json"  # inside a target folder: it is complete, and ours
STAGING_MARKER = ".coco-staging"  # inside a staging folder: this program may remove it
REJECTED_SUFFIX = ".rejected"  # an archive that failed verification is renamed to this


class ArchiveError(ValueError):
    """An archive failed a check; the message is one line and says what to do."""


def md5_file(path: Path, progress: bool = True) -> str:
    """Hex MD5 of a file, with a progress bar for large files."""
    digest = hashlib.md5(usedforsecurity=False)
    size = path.stat().st_size
    with open(path, "rb") as f, tqdm(
        total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"md5 {path.name}",
        disable=not progress or size < 64 << 20,
    ) as bar:  # fmt: skip
        while block := f.read(1 << 20):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def verify(path: Path, archive: Archive, progress: bool = True) -> str:
    """Check size and MD5 (when the table has them) and that the members to unpack are there
    and intact; returns the MD5. On a failure the file is renamed to `<file>.rejected` (kept,
    never deleted) and ArchiveError says what to do."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        _reject(path, f"is {size:,} bytes, the published size is {archive.size:,}")
    md5 = md5_file(path, progress)
    if archive.md5 is not None and md5 != archive.md5:
        _reject(path, f"has MD5 {md5}, the published MD5 is {archive.md5} ({archive.source})")
    try:
        with zipfile.ZipFile(path) as zf:
            names = _members(zf, archive)
            if len(names) != archive.members:
                _reject(path, f"holds {len(names)} files under {archive.prefix}, "
                        f"expected {archive.members}")  # fmt: skip
            if archive.md5 is None:  # no checksum to trust: the CRC of every member to unpack
                test = tqdm(names, desc=f"test {path.name}", unit="file", disable=not progress)
                for info in test:
                    with zf.open(info) as member:
                        while member.read(1 << 20):
                            pass
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        _reject(path, f"is not a complete zip archive ({error})")
    return md5


def _reject(path: Path, why: str) -> None:
    aside = path.with_name(path.name + REJECTED_SUFFIX)
    os.replace(path, aside)
    raise ArchiveError(
        f"{path.name} {why}; nothing was unpacked. The file is kept as {aside}: delete it and "
        f"run the same command again to download it afresh (or check --mirror)"
    )


def _members(zf: zipfile.ZipFile, archive: Archive) -> list[zipfile.ZipInfo]:
    """The files (not folders) under the archive's prefix; a path that would leave the target
    (absolute, or with '..') is refused."""
    chosen = []
    for info in zf.infolist():
        if info.is_dir() or not info.filename.startswith(archive.prefix):
            continue
        path = PurePosixPath(info.filename)
        if path.is_absolute() or ".." in path.parts:
            raise zipfile.BadZipFile(f"unsafe member path {info.filename!r}")
        chosen.append(info)
    return chosen


def is_unpacked(root: Path, archive: Archive) -> bool:
    """True when `<root>/<target>` holds this program's marker for this archive."""
    marker = root / archive.target / UNPACKED_MARKER
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    same = record.get("name") == archive.name and record.get("members") == archive.members
    return same and (archive.md5 is None or record.get("md5") == archive.md5)


def unpacked_bytes(path: Path, archive: Archive) -> int:
    """Bytes the members to unpack take once unpacked (from the zip's directory)."""
    with zipfile.ZipFile(path) as zf:
        return sum(info.file_size for info in _members(zf, archive))


def check_free_to_unpack(root: Path, archive: Archive) -> tuple[Path, Path]:
    """ArchiveError when the archive's target or staging folder exists and is not this
    program's (checked before any download, and again when unpacking); returns both."""
    target = root / archive.target
    if target.exists() and not (target / UNPACKED_MARKER).is_file():
        raise ArchiveError(
            f"{target} exists but was not unpacked by this command; move it away (or use another "
            f"--root) and run again"
        )
    staging = root / f".coco-staging-{archive.name}"
    if staging.exists() and not (staging / STAGING_MARKER).is_file():
        raise ArchiveError(f"{staging} exists and is not this program's: move it away")
    return target, staging


def unpack(path: Path, archive: Archive, root: Path, md5: str, progress: bool = True) -> Path:
    """Unpack the archive's members into `<root>/<target>` atomically; returns the target.

    A target that exists without this program's marker is refused (ArchiveError): it is not
    ours to replace."""
    target, staging = check_free_to_unpack(root, archive)
    remove_staging(staging)
    staging.mkdir(parents=True)
    (staging / STAGING_MARKER).write_text("python -m indexing coco\n")
    try:
        with zipfile.ZipFile(path) as zf:
            members = _members(zf, archive)
            bar = tqdm(members, desc=f"unpack {archive.name}", unit="file", disable=not progress)
            for info in bar:
                zf.extract(info, staging)
    except (zipfile.BadZipFile, EOFError) as error:  # the staging folder goes on the next run
        raise ArchiveError(
            f"{path.name}: unpacking failed ({error}); delete {path} and run again"
        ) from None
    inside = staging / archive.prefix.rstrip("/")
    folder = inside if inside.is_dir() else inside.parent  # a single-file prefix: its folder
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    record = {"name": archive.name, "archive": path.name, "md5": md5, "members": len(members),
              "files": files}  # fmt: skip
    (folder / UNPACKED_MARKER).write_text(json.dumps(record, indent=1) + "\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.replace(folder, target)
    elif inside.is_dir():  # an earlier unpack of ours: replaced as a whole if all of it is ours
        _check_only_ours(target)
        shutil.rmtree(target)
        os.replace(folder, target)
    else:  # a single file in a folder that may hold the user's files: only it is replaced
        _check_only_ours(target, files)
        (target / UNPACKED_MARKER).unlink()
        for name in files:
            os.replace(folder / name, target / name)
        os.replace(folder / UNPACKED_MARKER, target / UNPACKED_MARKER)
    remove_staging(staging)
    return target


def _check_only_ours(target: Path, names: list[str] | None = None) -> None:
    """ArchiveError unless every file of `target` (or, given `names`, each of those that exists
    there) is listed as ours by the marker of the earlier unpack."""
    try:
        ours = set(json.loads((target / UNPACKED_MARKER).read_text()).get("files", []))
    except (OSError, ValueError, AttributeError):
        ours = set()
    if names is None:
        present = [p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()]
    else:
        present = [n for n in names if (target / n).exists()]
    foreign = sorted(set(present) - ours - {UNPACKED_MARKER})
    if foreign:
        raise ArchiveError(
            f"{target / foreign[0]} is in the way of unpacking again and was not written by this "
            f"command; move it away and run again"
        )


def remove_staging(staging: Path) -> None:
    """Remove a staging folder left by an interrupted unpack, only if it carries our marker."""
    if staging.is_dir() and (staging / STAGING_MARKER).is_file():
        shutil.rmtree(staging)
    elif staging.exists():
        raise ArchiveError(f"{staging} exists and is not this program's: move it away")
