"""A training run's timeline (app.py --run RUN_DIR): the loss curves of its log.jsonl and, for a
prototype of the app's model, the matched prototype of every snapshot, early to late, with their
top segments in the app's collection.

The snapshots' indexes are built on demand over the app's images with the app index's settings,
cached under <cache>/timeline/, and rebuilt when a snapshot file changes (the cache is keyed by
the file's sha256). A snapshot that is the checkpoint of the app's index (or of the --compare
index) is not built again: that index is used.

No Gradio here (explorer/timeline_tab.py lays it out).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer.context import AppContext, index_key
from explorer.render import palette
from indexing.compare import Correspondence, correspondence

SNAPSHOT_FILE = re.compile(r"encoder-epoch(\d+)\.pt")  # model.train.snapshot_path's names
LOSS_COLUMNS = ("loss", "group_loss", "slot_loss")
MAX_PLOT_POINTS = 2000  # longer logs are averaged into this many buckets per curve
Progress = Callable[[float, str], None]  # (fraction done, what is happening)


@dataclass(frozen=True)
class Snapshot:
    epoch: int
    path: Path


@dataclass(frozen=True)
class RunLog:
    steps: pd.DataFrame  # step, epoch and whichever of LOSS_COLUMNS the log has
    unreadable: int  # lines that were not JSON objects with a step (e.g. one being written)


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


def find_snapshots(run_dir: str | Path) -> list[Snapshot]:
    """RUN_DIR/snapshots/encoder-epochNNNN.pt, by epoch."""
    folder = Path(run_dir) / "snapshots"
    found = []
    for path in folder.glob("encoder-epoch*.pt") if folder.is_dir() else ():
        match = SNAPSHOT_FILE.fullmatch(path.name)
        if match and path.is_file():
            found.append(Snapshot(int(match.group(1)), path))
    return sorted(found, key=lambda s: s.epoch)


def read_log(run_dir: str | Path) -> RunLog:
    """RUN_DIR/log.jsonl (one JSON object per optimisation step, model.train writes it) ->
    RunLog; lines that do not parse are counted, not fatal (the trainer may be writing one)."""
    rows, unreadable = [], 0
    path = Path(run_dir) / "log.jsonl"
    if path.is_file():
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    row = json.loads(line)
                    step = int(row["step"])
                except (ValueError, KeyError, TypeError):
                    unreadable += line.strip() != ""
                    continue
                entry = {"step": step, "epoch": row.get("epoch")}
                for column in LOSS_COLUMNS:
                    value = row.get(column)
                    if isinstance(value, int | float):
                        entry[column] = float(value)
                rows.append(entry)
    steps = pd.DataFrame(rows, columns=["step", "epoch", *LOSS_COLUMNS])
    return RunLog(steps.sort_values("step", kind="stable").reset_index(drop=True), unreadable)


def loss_figure(log: RunLog, snapshots: list[Snapshot]) -> go.Figure:
    """The loss curves against the step (bucket means beyond MAX_PLOT_POINTS steps), with a
    dotted line at the end of every snapshot's epoch."""
    steps = log.steps
    figure = go.Figure()
    if len(steps) > MAX_PLOT_POINTS:
        bucket = np.arange(len(steps)) * MAX_PLOT_POINTS // len(steps)
        steps = steps.groupby(bucket).mean(numeric_only=True)
    for column in LOSS_COLUMNS:
        if steps[column].notna().any():
            figure.add_trace(go.Scatter(x=steps["step"], y=steps[column], name=column))
    ends = log.steps.groupby("epoch")["step"].max() if len(log.steps) else pd.Series()
    for snapshot in snapshots:
        # snapshot after `epoch` completed epochs: the last step of epoch index epoch - 1
        if snapshot.epoch - 1 in ends.index:
            figure.add_vline(
                x=float(ends[snapshot.epoch - 1]),
                line_dash="dot",
                line_color="grey",
                annotation_text=f"epoch {snapshot.epoch}",
            )
    title = "training loss per step" if len(log.steps) else "no log.jsonl in the run folder"
    figure.update_layout(
        height=320,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        title={"text": title, "x": 0},
        xaxis={"title": "step"},
        yaxis={"title": "loss"},
    )
    return figure


class Timeline:
    """The run beside the app's model. Thread-safe: one build at a time, results kept."""

    def __init__(self, ctx: AppContext, run_dir: str | Path):
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"--run {run_dir}: no such folder (a model.train --out)")
        self.ctx = ctx
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
        from indexing.store import sha256_file

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
        comparison = self.ctx.comparison
        if comparison is not None and _checkpoint_sha(comparison.other) == sha:
            return comparison.other, "the --compare index"
        return None

    def _snapshot_context(
        self, snapshot: Snapshot, sha: str, position: int, progress: Progress | None
    ) -> AppContext:
        from indexing import ConceptIndex
        from indexing.store import is_index_dir

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
            comparison=None,
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
    from indexing.store import read_manifest

    try:
        read_manifest(folder)
    except (OSError, ValueError):
        return False
    return True
