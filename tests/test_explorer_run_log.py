"""A training run's folder (explorer.run_log): the per-step log read line by line, the loss
figure, the snapshots found by name, and the demo run committed under assets/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_log

from explorer.run_log import find_snapshots, loss_figure, read_log

ROOT = Path(__file__).resolve().parents[1]


def test_read_log_skips_lines_it_cannot_read(tmp_path):
    write_log(tmp_path / "log.jsonl", 4, ("{not json", "", '{"epoch": 3}', '{"step": 0, "loss'))
    log = read_log(tmp_path)
    assert log.steps["step"].tolist() == [1, 2, 3, 4]
    assert log.unreadable == 3  # the blank line is not counted
    assert log.steps["loss"].tolist() == pytest.approx([7.9, 7.8, 7.7, 7.6])
    assert read_log(tmp_path / "absent").steps.empty


def test_snapshots_sorted_by_epoch_number(tmp_path):
    folder = tmp_path / "snapshots"
    folder.mkdir()
    for name in ("encoder-epoch0100.pt", "encoder-epoch0020.pt", "notes.pt", "encoder-epochX.pt"):
        (folder / name).write_bytes(b"")
    assert [s.epoch for s in find_snapshots(tmp_path)] == [20, 100]


def test_loss_figure_buckets_long_logs(tmp_path):
    write_log(tmp_path / "log.jsonl", 5000)
    figure = loss_figure(read_log(tmp_path), [])
    assert [trace.name for trace in figure.data] == ["loss", "group_loss", "slot_loss"]
    assert all(len(trace.x) == 2000 for trace in figure.data)
    assert float(figure.data[0].y[0]) == pytest.approx(np.mean([8 - s / 10 for s in (1, 2, 3)]))


def test_the_committed_demo_run_matches_the_demo_model():
    from model import load_encoder

    run = ROOT / "assets" / "demo_run"
    files = [p for p in run.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10 * 2**20
    snapshots = find_snapshots(run)
    assert [s.epoch for s in snapshots] == [20, 40]
    final = load_encoder(ROOT / "assets" / "demo_encoder.pt", device="cpu")
    for snapshot in snapshots:
        encoder = load_encoder(snapshot.path, device="cpu")
        assert encoder.cfg == final.cfg
    log = read_log(run)
    assert log.unreadable == 0 and log.steps["step"].tolist() == list(range(1, 1861))
    assert log.steps["epoch"].max() == 59
