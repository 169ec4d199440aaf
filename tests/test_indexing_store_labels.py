"""Prototype names (indexing.store.labels): names set at once by threads of several processes all
survive; bad names are refused."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexing.store.labels import MAX_LENGTH, LabelStore

ROOT = Path(__file__).resolve().parents[1]
PROCESSES, THREADS, NAMES = 2, 8, 15  # names per thread
K = PROCESSES * THREADS * NAMES

# One writer process: THREADS threads, each naming its own NAMES prototypes, all starting when
# the file `go` appears (so that both processes write at the same time).
WRITER = """
import sys, threading, time
from pathlib import Path
from indexing.store.labels import LabelStore

path, folder, rank, threads, names, k = sys.argv[1:]
rank, threads, names = int(rank), int(threads), int(names)
store = LabelStore(Path(path), "sha", int(k))
go = Path(folder) / "go"

def write(thread):
    while not go.exists():
        time.sleep(0.001)
    for i in range(names):
        prototype = (rank * threads + thread) * names + i
        store.set_label(prototype, f"name {prototype}")

workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
for worker in workers:
    worker.start()
(Path(folder) / f"ready-{rank}").touch()
for worker in workers:
    worker.join()
"""


def test_names_set_by_two_processes_at_once_all_survive(tmp_path):
    path = tmp_path / "index.labels.json"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(tmp_path), str(rank)]
            + [str(THREADS), str(NAMES), str(K)],
            cwd=ROOT,
        )
        for rank in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{r}").exists() for r in range(PROCESSES)):
            assert time.monotonic() < deadline, "the writer processes did not start"
            assert all(w.poll() is None for w in writers), "a writer process failed"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        assert [w.wait(timeout=120) for w in writers] == [0] * PROCESSES
    finally:
        for writer in writers:
            writer.kill()
    names = LabelStore(path, "sha", K).labels()
    lost = sorted(set(range(K)) - set(names))
    assert not lost, f"{len(lost)} of {K} names lost, e.g. {lost[:10]}"
    assert all(names[k] == f"name {k}" for k in range(K))


def test_names_are_checked(tmp_path):
    store = LabelStore(tmp_path / "labels.json", "sha", 4)
    store.set_label(1, "  big \n sky ")
    assert store.labels() == {1: "big sky"}
    store.set_label(2, "x" * MAX_LENGTH)
    with pytest.raises(ValueError, match=f"at most {MAX_LENGTH}"):
        store.set_label(2, "x" * (MAX_LENGTH + 1))
    with pytest.raises(KeyError, match="unknown prototype 4"):
        store.set_label(4, "nope")
    store.set_label(1, "")
    assert store.labels() == {2: "x" * MAX_LENGTH}
