"""A training run's timeline (app.py --run RUN_DIR): the loss curves of its log.jsonl and, for a
prototype of the app's model, the matched prototype of every snapshot, early to late, with their
top segments in the app's collection.

The snapshots' indexes are built on demand over the app's images with the app index's settings,
cached under <cache>/timeline/, and rebuilt when a snapshot file changes (the cache is keyed by
the file's sha256). A snapshot that is the checkpoint of the app's index (or of the --compare
index) is not built again: that index is used.

The run's folder is read by explorer.run_log. No Gradio here (explorer/timeline_tab.py lays it
out).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.comparison import Comparison
from explorer.context import AppContext, index_key
from explorer.render import palette
from explorer.run_log import Snapshot, find_snapshots, read_log
from indexing.compare.correspondence import Correspondence, correspondence

Progress = Callable[[float, str], None]  # (fraction done, what is happening)


@dataclass(frozen=True)
class Stage:
    """One snapshot beside the app's model: its index, and the correspondence from the app's
    prototypes (rows) to the snapshot's (columns) over the whole collection."""

    snapshot: Snapshot
    ctx: AppContext  # the snapshot's index (no encoder), for its thumbnails
    result: Correspondence
    matched: np.ndarray  # (K_app,) Hungarian partner in the snapshot, -1 when unmatched
    best: np.ndarray  # (K_app,) partner of highest IoU, -1 when the prototype has no pixel
    reused: str  # "" when built for the timeline, else which index it is ("this index", ...)


class Timeline:
    """The run beside the app's model. Thread-safe: one build at a time, results kept."""

    def __init__(self, ctx: AppContext, run_dir: str | Path, comparison: Comparison | None = None):
        """`comparison`: the app's --compare model, whose index serves a snapshot that is its
        checkpoint (not built again)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"--run {run_dir}: no such folder (a model.train --out)")
        self.ctx = ctx
        self.comparison = comparison
        self.run_dir = run_dir.resolve()
        self.log = read_log(run_dir)
        self.snapshots = find_snapshots(run_dir)
        if not self.snapshots and not len(self.log.steps):
            raise FileNotFoundError(
                f"--run {run_dir}: neither log.jsonl nor snapshots/encoder-epoch*.pt in it "
                "(train with `python -m model.train --out DIR --snapshot-every N`)"
            )
        run_key = index_key({"run": str(self.run_dir), "index": ctx.index_key})
        self.cache = ctx.cache_dir / "timeline" / run_key
        self._lock = threading.Lock()
        self._hashes: dict[Path, tuple[tuple[int, int], str]] = {}  # path -> (stat key, sha)
        self._stages: dict[str, Stage] = {}  # by snapshot sha256
        self.builds = 0  # indexes built by this object (tests read it)

    def summary(self) -> str:
        steps = self.log.steps
        epochs = ", ".join(str(s.epoch) for s in self.snapshots) or "none"
        last = steps.iloc[-1] if len(steps) else None
        text = f"Run **{self.run_dir.name}**: {len(steps):,} logged steps"
        if last is not None and pd.notna(last["loss"]):
            text += f" (last loss {last['loss']:.3f})"
        text += f" · snapshots after epochs {epochs}"
        if self.log.unreadable:
            text += f" · {self.log.unreadable} unreadable log lines skipped"
        return text

    def stages(self, progress: Progress | None = None) -> list[Stage]:
        """Every snapshot's Stage, early to late: indexes built where missing or stale."""
        with self._lock:
            return [self._stage(s, i, progress) for i, s in enumerate(self.snapshots)]

    def _stage(self, snapshot: Snapshot, position: int, progress: Progress | None) -> Stage:
        sha = self._sha(snapshot.path)
        if sha in self._stages and self._stages[sha].snapshot == snapshot:
            return self._stages[sha]
        known = self._known_index(sha)
        if known is not None:
            other, reused = known
        else:
            other, reused = self._snapshot_context(snapshot, sha, position, progress), ""
        result = correspondence(self.ctx.index, other.index, progress=False)
        partners = result.partners("a")
        stage = Stage(
            snapshot=snapshot,
            ctx=other,
            result=result,
            matched=partners["matched"].to_numpy(),
            best=partners["partner"].to_numpy(),
            reused=reused,
        )
        self._stages[sha] = stage
        return stage

    def _sha(self, path: Path) -> str:
        from indexing.store.directory import sha256_file

        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        cached = self._hashes.get(path)
        if cached is None or cached[0] != key:
            cached = (key, sha256_file(path))
            self._hashes[path] = cached
        return cached[1]

    def _known_index(self, sha: str) -> tuple[AppContext, str] | None:
        """The app's index or its --compare index when `sha` is their checkpoint."""
        if _checkpoint_sha(self.ctx) == sha:
            return self.ctx, "this index"
        comparison = self.comparison
        if comparison is not None and _checkpoint_sha(comparison.other) == sha:
            return comparison.other, "the --compare index"
        return None

    def _snapshot_context(
        self, snapshot: Snapshot, sha: str, position: int, progress: Progress | None
    ) -> AppContext:
        from indexing import ConceptIndex
        from indexing.store.directory import is_index_dir

        folder = self.cache / f"epoch{snapshot.epoch:04d}-{sha[:12]}"
        if not _complete(folder):
            # an earlier build of this epoch (the snapshot changed since): ours, replace it
            for stale in self.cache.glob(f"epoch{snapshot.epoch:04d}-*"):
                if stale != folder and is_index_dir(stale):
                    shutil.rmtree(stale)
            self._build(snapshot, folder, position, progress)
        index = ConceptIndex.open(folder, gpu=False)
        other = replace(
            self.ctx,
            index=index,
            encoder=None,
            colours=palette(int(index.num_prototypes)),
            index_key=index_key(index.manifest),
        )
        other.thumbs_dir.mkdir(parents=True, exist_ok=True)  # served by explorer.ui.build_app
        return other

    def _build(self, snapshot: Snapshot, folder: Path, position: int, progress) -> None:
        from indexing import BuildConfig, build_index

        manifest = self.ctx.index.manifest
        build = manifest.get("build") or {}
        annotations = tuple(Path(p) for p in manifest.get("annotations") or ())
        device = self.ctx.encoder.device.type if self.ctx.encoder is not None else "cpu"
        config = BuildConfig(
            checkpoint=snapshot.path,
            images=Path(self.ctx.index.image_root),
            out=folder,
            annotations=annotations if all(p.is_file() for p in annotations) else (),
            size=(manifest.get("model") or {}).get("input_size"),
            device=device,
            workers=0,  # no worker processes forked from the app's threads
            precision=build.get("precision", "fp32"),
            authors_crop=build.get("view") is not None,
        )
        chunks = max(1, -(-self.ctx.index.num_images // config.chunk_size))
        total = len(self.snapshots)
        what = f"building the index of the epoch-{snapshot.epoch} snapshot"

        def on_chunk(j: int) -> None:
            if progress is not None:
                progress((position + (j + 1) / chunks) / total, what)

        if progress is not None:
            progress(position / total, what)
        build_index(config, on_chunk=on_chunk)
        self.builds += 1

    def strip(self, prototype: int, stages: list[Stage]) -> pd.DataFrame:
        """One row per snapshot, early to late: the partner of the app's `prototype` there."""
        rows = []
        for stage in stages:
            matched, best = int(stage.matched[prototype]), int(stage.best[prototype])
            partner = matched if matched >= 0 else best
            iou = stage.result.iou()[prototype, partner] if partner >= 0 else np.nan
            rows.append(
                {
                    "epoch": stage.snapshot.epoch,
                    "partner": partner,
                    "iou": round(float(iou), 3) if np.isfinite(iou) else None,
                    "how": "Hungarian match" if matched >= 0 else "best IoU (unmatched)",
                    "index": stage.reused or "built for the timeline",
                }
            )
        return pd.DataFrame(rows, columns=["epoch", "partner", "iou", "how", "index"])


def _checkpoint_sha(ctx: AppContext) -> str | None:
    return ctx.index.checkpoint_sha256


def _complete(folder: Path) -> bool:
    from indexing.store.directory import read_manifest

    try:
        read_manifest(folder)
    except (OSError, ValueError):
        return False
    return True
