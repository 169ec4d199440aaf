"""Two gloo processes under torchrun build the same index as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.mark.slow
def test_two_processes_build_the_same_index(indexing_data, tmp_path) -> None:
    config = indexing_data["config"]
    out = tmp_path / "index"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "indexing", "build", "--checkpoint", str(config.checkpoint),
        "--images", str(config.images), "--annotations", str(config.annotations[0]),
        "--out", str(out), "--size", str(config.size), "--batch-size", str(config.batch_size),
        "--chunk-size", str(config.chunk_size), "--workers", "0", "--device", "cpu",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "indexed 32 images" in done.stdout
    one, two = config.out, out
    pd.testing.assert_frame_equal(
        pd.read_feather(one / "images.arrow"), pd.read_feather(two / "images.arrow")
    )  # the assignment shards too: the same bytes at the same offsets
    a, b = pd.read_feather(one / "slots.arrow"), pd.read_feather(two / "slots.arrow")
    exact = ["slot_id", "image_id", "prototype", "bbox_x", "bbox_y", "bbox_w", "bbox_h"]
    pd.testing.assert_frame_equal(a[exact], b[exact])
    np.testing.assert_allclose(a[["area", "score"]], b[["area", "score"]], rtol=0, atol=1e-5)
    fa, fb = faiss.read_index(str(one / "slots.faiss")), faiss.read_index(str(two / "slots.faiss"))
    assert fa.ntotal == fb.ntotal == len(a)
    va = np.stack([fa.reconstruct(i) for i in range(fa.ntotal)])
    vb = np.stack([fb.reconstruct(i) for i in range(fb.ntotal)])
    np.testing.assert_allclose(va, vb, rtol=0, atol=1e-5)
    manifest = (two / "manifest.json").read_text()
    assert '"processes": 2' in manifest
    assert not (tmp_path / "index.partial").exists()
