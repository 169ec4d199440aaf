"""`python app.py` with server-side timings, for bench/app_load.py --latency.

    python bench/timed_app.py TIMING_LOG [app.py arguments ...]

Runs app.py's main() unchanged, after hooking from outside (so that the same benchmark times
any version of the app): every event's whole server-side processing (Blocks.process_api:
Gradio's preprocessing, the handler, Gradio's postprocessing), the handler alone, and the
time spent inside the index's queries (ConceptIndex.similar, top_segments, image; also the
searches an upload's grouping makes) during it. One JSON line per event is appended to TIMING_LOG:
{"event": api name, "process_s": ..., "handler_s": ..., "index_s": ...}.
The app's own folder comes first on sys.path: `python <worktree>/bench/timed_app.py` times
that worktree's app, whatever the virtual environment's editable install points to.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INDEX_METHODS = ("similar", "top_segments", "image")


class TimingLog:
    """Appends one JSON line per event; the index time is summed per thread (a handler runs
    in one worker thread; the index calls it makes run in the same thread)."""

    def __init__(self, path: Path):
        self.path, self.lock, self.local = path, threading.Lock(), threading.local()
        self.handler_times: dict[int, tuple[float, float]] = {}  # id(block_fn) -> (s, index s)

    def index_seconds(self) -> float:
        return getattr(self.local, "index_s", 0.0)

    def add_index(self, seconds: float) -> None:
        self.local.index_s = self.index_seconds() + seconds

    def write(self, record: dict) -> None:
        with self.lock, self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def hook_index(log: TimingLog) -> None:
    from indexing import ConceptIndex

    for name in INDEX_METHODS:
        method = getattr(ConceptIndex, name, None)
        if method is None:
            continue

        @functools.wraps(method)
        def timed(*args, _method=method, **kwargs):
            if getattr(log.local, "inside", False):  # a query within a query: counted once
                return _method(*args, **kwargs)
            log.local.inside, began = True, time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                log.local.inside = False
                log.add_index(time.perf_counter() - began)

        setattr(ConceptIndex, name, timed)


def hook_handlers(demo, log: TimingLog) -> None:
    """Wrap every event's function: its time and the index time within it land in
    log.handler_times, which the process_api hook reads when the event ends (the handler
    runs in a worker thread, process_api in the event loop)."""
    for block_fn in demo.fns.values():
        if block_fn.fn is None:
            continue
        key = id(block_fn)

        @functools.wraps(block_fn.fn)  # keeps the signature Gradio inspects (SelectData, ...)
        def timed(*args, _fn=block_fn.fn, _key=key, **kwargs):
            log.local.index_s = 0.0
            began = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                log.handler_times[_key] = (time.perf_counter() - began, log.index_seconds())

        block_fn.fn = timed


def hook_process_api(log: TimingLog) -> None:
    """The whole server-side processing of an event, with the handler's figures."""
    import gradio.blocks

    original = gradio.blocks.Blocks.process_api

    @functools.wraps(original)
    async def timed(self, block_fn, *args, **kwargs):
        began = time.perf_counter()
        result = await original(self, block_fn, *args, **kwargs)
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        handler_s, index_s = log.handler_times.pop(id(fn), (None, None))
        log.write(
            {
                "event": fn.api_name or getattr(fn.fn, "__name__", "?"),
                "process_s": time.perf_counter() - began,
                "handler_s": handler_s,
                "index_s": index_s,
            }
        )
        return result

    gradio.blocks.Blocks.process_api = timed


def main(argv: list[str]) -> int:
    log = TimingLog(Path(argv[0]))
    sys.path.insert(0, str(ROOT))
    sys.argv = [str(ROOT / "app.py"), *argv[1:]]
    import app
    import explorer.ui

    hook_index(log)
    hook_process_api(log)
    build = explorer.ui.build_app

    def build_timed(*args, **kwargs):
        demo = build(*args, **kwargs)
        hook_handlers(demo, log)
        return demo

    app.build_app = build_timed  # app.main imports it from explorer at call time
    explorer.build_app = build_timed
    return app.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
