"""A training run's folder as model.train writes it: the snapshots (snapshots/encoder-epochNNNN.pt)
and the per-step log (log.jsonl), read without loading a model; the loss curves as a figure.
explorer.timeline puts the snapshots beside the app's model. No Gradio here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

SNAPSHOT_FILE = re.compile(r"encoder-epoch(\d+)\.pt")  # model.train.snapshot_path's names
LOSS_COLUMNS = ("loss", "group_loss", "slot_loss")
MAX_PLOT_POINTS = 2000  # longer logs are averaged into this many buckets per curve


@dataclass(frozen=True)
class Snapshot:
    epoch: int
    path: Path


@dataclass(frozen=True)
class RunLog:
    steps: pd.DataFrame  # step, epoch and whichever of LOSS_COLUMNS the log has
    unreadable: int  # lines that were not JSON objects with a step (e.g. one being written)


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
