"""app.py --run: a training run's snapshots beside the app's index (explorer.timeline), the
/timeline endpoint through gradio_client and the Timeline tab in Debian's chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import new_page, write_log
from gradio_client import Client

from explorer.timeline import Timeline

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def run_dir(explorer_data, tmp_path_factory) -> Path:
    """A run folder: 10 logged steps (5 per epoch), a snapshot after epoch 1 (another random
    encoder, K 8 like the index's) and one after epoch 2 (the index's own checkpoint)."""
    from conftest import prototype_sample, save_random_encoder

    run = tmp_path_factory.mktemp("run")
    (run / "snapshots").mkdir()
    sample = prototype_sample(explorer_data["images"])
    save_random_encoder(run / "snapshots" / "encoder-epoch0001.pt", seed=7, images=sample)
    shutil.copyfile(explorer_data["checkpoint"], run / "snapshots" / "encoder-epoch0002.pt")
    write_log(run / "log.jsonl", 10)
    return run


@pytest.fixture(scope="module")
def timeline_ctx(explorer_data, tmp_path_factory):
    from explorer import open_context

    return open_context(
        explorer_data["index"],
        explorer_data["checkpoint"],
        tmp_path_factory.mktemp("timeline-cache"),
        device="cpu",
    )


@pytest.fixture(scope="module")
def timeline(timeline_ctx, run_dir):
    """The run beside the app's model, as app.py --run builds it."""
    return Timeline(timeline_ctx, run_dir)


def test_a_folder_without_log_or_snapshots_is_refused(explorer_ctx, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        Timeline(explorer_ctx, tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="neither log.jsonl nor snapshots"):
        Timeline(explorer_ctx, tmp_path)


def test_stages_build_once_and_reuse_the_apps_index(timeline, timeline_ctx):
    reported = []
    stages = timeline.stages(lambda fraction, what: reported.append((fraction, what)))
    assert [s.snapshot.epoch for s in stages] == [1, 2]
    assert timeline.builds == 1  # epoch 2 is the app's own checkpoint: its index is used
    assert stages[1].reused == "this index" and stages[1].ctx.index is timeline_ctx.index
    assert stages[0].reused == "" and stages[0].result.images == 60
    fractions = [f for f, _ in reported]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(0.5)
    assert "epoch-1 snapshot" in reported[0][1]
    timeline.stages()
    assert timeline.builds == 1  # cached
    # against itself every present prototype is its own partner at IoU 1
    table = timeline.strip(0, stages)
    assert table["epoch"].tolist() == [1, 2]
    present = np.flatnonzero(stages[1].result.counts.sum(axis=1))
    assert (stages[1].matched[present] == present).all()
    first = int(present[0])
    assert timeline.strip(first, stages).iloc[1][["partner", "iou"]].tolist() == [first, 1.0]


def test_a_changed_snapshot_is_rebuilt_and_only_our_folder_replaced(
    explorer_data, run_dir, tmp_path
):
    from conftest import prototype_sample, save_random_encoder

    from explorer import open_context

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    timeline = Timeline(open_context(explorer_data["index"], None, tmp_path / "cache"), run)
    before = timeline.stages()[0]
    old_folder = Path(before.ctx.index.root)
    keep = timeline.cache / "epoch0001-notes"  # not an index: never deleted
    keep.mkdir()
    (keep / "mine.txt").write_text("a user's file")
    sample = prototype_sample(explorer_data["images"])
    save_random_encoder(run / "snapshots" / "encoder-epoch0001.pt", seed=8, images=sample)
    after = timeline.stages()[0]
    assert timeline.builds == 2
    assert Path(after.ctx.index.root) != old_folder and not old_folder.exists()
    assert (keep / "mine.txt").read_text() == "a user's file"
    assert not np.array_equal(before.result.counts, after.result.counts)


def test_a_snapshot_indexed_for_compare_is_not_built_again(explorer_data, run_dir, tmp_path):
    from explorer import open_context
    from explorer.comparison import open_comparison
    from indexing import BuildConfig, build_index

    snapshot = run_dir / "snapshots" / "encoder-epoch0001.pt"
    other = tmp_path / "index-epoch1"
    build_index(
        BuildConfig(
            checkpoint=snapshot, images=explorer_data["images"], out=other, device="cpu", workers=0
        )
    )
    ctx = open_context(explorer_data["index"], None, tmp_path / "cache")
    comparison = open_comparison(ctx, other)
    timeline = Timeline(ctx, run_dir, comparison)
    stages = timeline.stages()
    assert [s.reused for s in stages] == ["the --compare index", "this index"]
    assert timeline.builds == 0
    assert stages[0].ctx.index is comparison.other.index


def test_strip_galleries(timeline_ctx, timeline):
    from explorer.compare_actions import timeline_strip

    status, table, shown = timeline_strip(timeline_ctx, timeline, 3, 4)
    assert [label.split(" · ")[0] for label, _ in shown] == ["epoch 1", "epoch 2", "this index"]
    assert all(1 <= len(items) <= 4 for _, items in shown if items)
    assert all(Path(path).is_file() for _, items in shown for path, _ in items)
    assert "p3" in status


# ---- the app: endpoint, command line, browser ---------------------------------------------------


@pytest.fixture(scope="module")
def timeline_app(explorer_data, timeline_ctx, timeline):
    """The app with the Timeline tab, launched in this process; yields its URL."""
    from conftest import launched

    with launched(timeline_ctx, explorer_data, timeline=timeline) as url:
        yield url


def test_timeline_endpoint(timeline_app, timeline_ctx):
    from gradio_client.exceptions import AppError

    client = Client(timeline_app, verbose=False)
    table = client.predict(2, api_name="/timeline")
    assert table["headers"] == ["epoch", "partner", "iou", "how", "index"]
    assert [row[0] for row in table["data"]] == [1, 2]
    with pytest.raises(AppError, match="Prototype 99 does not exist"):
        client.predict(99, api_name="/timeline")


def test_app_refuses_a_missing_run_folder(explorer_data, tmp_path, capsys):
    import app

    args = ["--index", str(explorer_data["index"]), "--run", str(tmp_path / "nope")]
    status = app.main([*args, "--cache", str(tmp_path / "c")])
    assert status == 1
    assert "--run" in capsys.readouterr().err


def test_run_folder_is_not_served(timeline_app, run_dir):
    from conftest import http_status

    target = run_dir / "snapshots" / "encoder-epoch0001.pt"
    assert http_status(f"{timeline_app}/gradio_api/file={target}") in (403, 404)


@pytest.mark.browser
@pytest.mark.slow
def test_timeline_tab_in_the_browser(browser, timeline_app):
    ARTIFACTS.mkdir(exist_ok=True)
    page, errors = new_page(browser, height=1200)
    page.goto(timeline_app)
    page.wait_for_selector("#concept-gallery img")
    page.get_by_role("tab", name="Timeline").click()
    page.wait_for_selector("#timeline-loss .js-plotly-plot")
    for elem_id in ("timeline-epoch-1", "timeline-epoch-2", "timeline-final"):
        page.wait_for_selector(f"#{elem_id} img")
    assert "epoch 1 · prototype" in page.inner_text("#timeline-epoch-1")
    assert "partner" in page.inner_text("#timeline-table")
    page.screenshot(path=str(ARTIFACTS / "timeline_tab.png"), full_page=True)
    page.close()
    assert not errors, errors
