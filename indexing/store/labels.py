"""The user's prototype names, in `<index>.labels.json` beside the index directory.

    {"format": "slotcon-explorer-labels", "version": 1,
     "checkpoints": {"<checkpoint SHA-256>": {"<prototype>": "<name>", ...}, ...}}

Names are keyed by the checkpoint's SHA-256, so they survive a rebuild of the index with the
same checkpoint and never attach to another model's prototypes. Writes are atomic (temporary
file + rename); each one re-reads the file under a lock held across threads and processes
(fcntl on `<labels file>.lock` beside it), so names set by another app process or script on the
same index are kept. Reads take no lock: a rename replaces the file whole.
"""

from __future__ import annotations

import fcntl
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexing.store.directory import write_json_atomic

FORMAT = "slotcon-explorer-labels"
VERSION = 1
MAX_LENGTH = 200  # characters of one name


class LabelStore:
    """Names of the K prototypes of one checkpoint; safe for concurrent threads and processes."""

    def __init__(self, path: Path, checkpoint_sha256: str, num_prototypes: int):
        self.path = Path(path)
        self.checkpoint_sha256 = checkpoint_sha256
        self.num_prototypes = num_prototypes
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the write lock: threads of this process queue on a threading lock, processes on
        flock of the lock file (which stays, empty: deleting it would let two writers lock
        different files)."""
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"format": FORMAT, "version": VERSION, "checkpoints": {}}
        except (OSError, ValueError) as error:
            raise ValueError(f"{self.path}: unreadable labels file ({error})") from error
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a labels file of SlotCon Explorer")
        data.setdefault("checkpoints", {})
        return data

    def labels(self) -> dict[int, str]:
        """{prototype: name} for this checkpoint (prototypes without a name are absent)."""
        names = self._read()["checkpoints"].get(self.checkpoint_sha256, {})
        return {int(k): str(v) for k, v in names.items() if 0 <= int(k) < self.num_prototypes}

    def set_label(self, prototype: int, name: str) -> None:
        """Name a prototype (an empty name removes it); written to disk before returning."""
        prototype = int(prototype)
        if not 0 <= prototype < self.num_prototypes:
            raise KeyError(
                f"unknown prototype {prototype}: the index has {self.num_prototypes} (0.."
                f"{self.num_prototypes - 1})"
            )
        name = " ".join(str(name).split())  # one line, no surrounding spaces
        if len(name) > MAX_LENGTH:
            raise ValueError(f"a prototype name has at most {MAX_LENGTH} characters")
        with self._locked():
            data = self._read()
            names = data["checkpoints"].setdefault(self.checkpoint_sha256, {})
            if name:
                names[str(prototype)] = name
            else:
                names.pop(str(prototype), None)
            names = dict(sorted(names.items(), key=lambda item: int(item[0])))
            data["checkpoints"][self.checkpoint_sha256] = names
            write_json_atomic(self.path, data)
