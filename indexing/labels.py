"""The user's prototype names, in `<index>.labels.json` beside the index directory.

    {"format": "slotcon-explorer-labels", "version": 1,
     "checkpoints": {"<checkpoint SHA-256>": {"<prototype>": "<name>", ...}, ...}}

Names are keyed by the checkpoint's SHA-256, so they survive a rebuild of the index with the
same checkpoint and never attach to another model's prototypes. Writes are atomic (temporary
file + rename) and serialised by a lock; every write re-reads the file first, so names set by
another process in between are kept.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from indexing.store import write_json_atomic

FORMAT = "slotcon-explorer-labels"
VERSION = 1
MAX_LENGTH = 200  # characters of one name


class LabelStore:
    """Names of the K prototypes of one checkpoint; safe for concurrent threads."""

    def __init__(self, path: Path, checkpoint_sha256: str, num_prototypes: int):
        self.path = Path(path)
        self.checkpoint_sha256 = checkpoint_sha256
        self.num_prototypes = num_prototypes
        self._lock = threading.Lock()

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
        with self._lock:
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
        with self._lock:
            data = self._read()
            names = data["checkpoints"].setdefault(self.checkpoint_sha256, {})
            if name:
                names[str(prototype)] = name
            else:
                names.pop(str(prototype), None)
            names = dict(sorted(names.items(), key=lambda item: int(item[0])))
            data["checkpoints"][self.checkpoint_sha256] = names
            write_json_atomic(self.path, data)
