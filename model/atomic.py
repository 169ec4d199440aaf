"""Atomic file writes for checkpoints and index files: a reader never sees half a file.

The data goes to a new temporary file beside the target, is flushed to disk (unless the caller
says it can be rebuilt), and the temporary file is renamed over the target. The temporary file
is created with mode 0o666 through os.open, so the kernel applies the process umask (and a
directory's default ACL) exactly as for an ordinary open(path, "w"): nothing reads or changes
the process-wide umask, which would race with other threads (the app writes from its request
threads). Imports no torch: model.scenes and indexing use it too.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file `.<name>.<random>.tmp` beside `path`, open for writing: (descriptor, path)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, _CREATE, 0o666), tmp
        except FileExistsError:
            continue  # another writer drew the same name: draw again


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None], durable: bool = True) -> None:
    """Call `write(f)` on a temporary file beside `path`, then rename it to `path`.

    `durable=False` skips the fsync (caches that can be rebuilt, written on hot paths). On any
    error the temporary file is removed and `path` keeps its previous content (or stays absent).
    """
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` atomically (write_atomic)."""
    write_atomic(path, lambda f: f.write(data), durable)
