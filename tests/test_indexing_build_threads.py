"""Slot rows and maps made in a pool of threads beside the forward (the GPU build's way) give
the index the CPU build makes in one thread."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_indexing_build_batching import build_tables

import indexing.build.pipeline as pipeline


def test_rows_made_in_threads_equal_rows_made_inline(photos, tmp_path, monkeypatch):
    inline = build_tables(photos[0].parent, tmp_path / "inline", batch_size=3, chunk_size=4)
    monkeypatch.setattr(pipeline, "_slot_threads", lambda device: 3)
    threaded = build_tables(photos[0].parent, tmp_path / "threads", batch_size=3, chunk_size=4)
    pd.testing.assert_frame_equal(threaded["slots"], inline["slots"])
    pd.testing.assert_frame_equal(threaded["images"], inline["images"])
    assert threaded["maps"].keys() == inline["maps"].keys()
    for image_id, assignment in inline["maps"].items():
        np.testing.assert_array_equal(threaded["maps"][image_id], assignment)
