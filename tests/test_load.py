"""8 concurrent gradio_client users uploading and querying for 10 s: no failures.

The 30 s run with latencies is bench/app_load.py (numbers in docs/BENCHMARKS.md); speed is
never asserted here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]

BENCH = Path(__file__).resolve().parents[1] / "bench" / "app_load.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("app_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_eight_users_for_ten_seconds_without_failures(explorer_app, explorer_ctx):
    bench = load_bench()
    index = explorer_ctx.index
    images = [index.image_root / p for p in index.images_table()["path"].iloc[:10]]
    result = bench.run_load(explorer_app, images, index.num_slots, users=8, seconds=10)
    assert not result.failures, result.failures[:5]
    assert len(result.latencies["group_image"]) >= 4
    assert len(result.latencies["similar"]) >= 4
    summary = result.summary()
    assert summary["failures"] == 0 and summary["requests_per_s"] > 0
