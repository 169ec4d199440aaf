"""8 concurrent gradio_client users uploading and querying for 10 s: no failures, also once
the overlay cache is full (every upload then prunes the oldest overlays while others read).

The 30 s run with latencies is bench/app_load.py (numbers in docs/BENCHMARKS.md); speed is
never asserted here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import free_port

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


@pytest.fixture(scope="module")
def full_cache_app(explorer_data, explorer_ctx, tmp_path_factory):
    """A second app over the same index whose overlay cache is full (at its real cap) before
    the first request. Uploads of every collection image each write an overlay and prune the
    cache; with 8 model workers instead of 2, 8 users prune at once while others read."""
    from explorer import build_app, launch_options

    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    config = replace(explorer_ctx.config, model_concurrency=8)
    ctx = replace(explorer_ctx, cache_dir=tmp_path_factory.mktemp("full-cache"), config=config)
    ctx.overlays_dir.mkdir(parents=True)
    for i in range(config.max_overlay_files):
        (ctx.overlays_dir / f"old-{i}.png").write_bytes(b"an overlay of an earlier session")
    demo = build_app(ctx)
    options = launch_options(
        ctx, explorer_data["index"], explorer_data["checkpoint"], port=free_port()
    )
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    yield url.rstrip("/"), ctx
    demo.close()


def eight_users(url: str, ctx, images: int = 10):
    bench = load_bench()
    index = ctx.index
    images = [index.image_root / p for p in index.images_table()["path"].iloc[:images]]
    return bench.run_load(url, images, index.num_slots, users=8, seconds=10)


def test_eight_users_for_ten_seconds_without_failures(explorer_app, explorer_ctx):
    result = eight_users(explorer_app, explorer_ctx)
    assert not result.failures, result.failures[:5]
    assert len(result.latencies["group_image"]) >= 4
    assert len(result.latencies["similar"]) >= 4
    summary = result.summary()
    assert summary["failures"] == 0 and summary["requests_per_s"] > 0


def test_eight_users_with_a_full_overlay_cache(full_cache_app):
    url, ctx = full_cache_app
    result = eight_users(url, ctx, images=len(ctx.index.image_ids()))
    assert not result.failures, result.failures[:5]
    assert len(result.latencies["group_image"]) >= 4
    overlays = [p for p in ctx.overlays_dir.iterdir() if not p.name.startswith(".")]
    assert len(overlays) <= ctx.config.max_overlay_files
