"""Worker processes end when their parent is killed outright (kill -9): a bare child that calls
model.workers.exit_with_parent, and the DataLoader workers of a real `indexing build`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARENT = """
import multiprocessing, sys, time
from model.workers import exit_with_parent

def child():
    exit_with_parent()
    time.sleep(600)

if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    p = multiprocessing.Process(target=child)
    p.start()
    print(p.pid, flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its entry waits for a reaper


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().split(")")[-1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    return found


def _wait_gone(pids: list[int], seconds: float = 20.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


def test_a_child_ends_when_its_parent_is_killed():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        time.sleep(0.5)  # the child has run exit_with_parent
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert _wait_gone([child]) == []
    finally:
        parent.kill()


def test_a_killed_build_leaves_no_worker_processes(indexing_data, tmp_path):
    """`indexing build --workers 2` killed with SIGKILL while its workers decode images."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):  # enough images that the build is still extracting when killed
        for path in sorted(Path(indexing_data["images"]).glob("*.jpg")):
            (images / f"{i}_{path.name}").write_bytes(path.read_bytes())
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "indexing", "build", "--checkpoint",
               str(indexing_data["checkpoint"]), "--images", str(images), "--out",
               str(tmp_path / "index"), "--workers", "2", "--batch-size", "1",
               "--size", "256"]  # fmt: skip
    build = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2 and build.poll() is None:
            time.sleep(0.2)
            workers = [p for p in _children(build.pid) if _alive(p)]
        assert len(workers) == 2, "the build ended before its workers were seen"
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=30)
        assert _wait_gone(workers) == []
    finally:
        build.kill()
