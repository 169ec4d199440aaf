"""Output directories: a command replaces or continues only a directory it wrote itself.

`python -m indexing build`, `python -m model.scenes` and `python -m model.train` each take
`--out DIR` and may replace (or resume) what is there. Before any work they call
check_output_dir with a recogniser of their own output; anything else that is not empty (a
folder of the user's files, a file) is refused, so a mistyped --out never loses a file.

Imports no torch at module level: model.scenes and its worker processes run without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

RUN_FILES = ("last.pt", "encoder.pt", "log.jsonl")  # what model.train writes into --out


class OutputDirError(FileExistsError, ValueError):
    """--out names something the command did not write. Both a FileExistsError and a
    ValueError, so that command lines catching either report it as a message."""


def check_output_dir(
    path: str | Path, recognise: Callable[[Path], bool], what: str, flag: str = "--out"
) -> None:
    """Return when `path` is absent, an empty directory or one that `recognise(path)` accepts
    as the command's own earlier output (`what`, e.g. "an index"); raise OutputDirError
    otherwise. Reads only; call it before any work."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    advice = f"choose another {flag} or move it away yourself"
    if not path.is_dir():
        raise OutputDirError(f"{path} exists and is not a directory; not replacing it: {advice}")
    if next(path.iterdir(), None) is None or recognise(path):
        return
    raise OutputDirError(
        f"{path} is not empty and is not {what} written by this program; not replacing or "
        f"writing into it (nothing was changed): {advice}"
    )


def is_run_dir(path: str | Path) -> bool:
    """True when `path` holds a training run of model.train: at least one of last.pt,
    encoder.pt, log.jsonl, and each of them present in this project's format (a foreign
    log.jsonl would be truncated on resume, foreign .pt files overwritten)."""
    present = [Path(path) / name for name in RUN_FILES if (Path(path) / name).exists()]
    return bool(present) and all(
        _is_own_log(p) if p.suffix == ".jsonl" else _is_own_checkpoint(p) for p in present
    )


def _is_own_checkpoint(path: Path) -> bool:
    import torch

    from model.checkpoint import FORMAT

    try:  # mmap: the tensors are not read, only the small pickled dict
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # anything torch cannot read is not ours
        return False
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def _is_own_log(path: Path) -> bool:
    """Empty (a run stopped before its first step) or JSON records with a step and a loss."""
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 16)
        if not first.strip():
            return path.stat().st_size == len(first)
        record = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "step" in record and "loss" in record
