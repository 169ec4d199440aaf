"""The web app under load: N concurrent gradio_client users, each alternating an upload
(/group_image) and a similarity query (/similar), for a fixed time; or, with --latency and
--browser, one user at a time and where each request's time goes.

    python bench/app_load.py --index DIR --checkpoint FILE [--users 8] [--seconds 30]
    python bench/app_load.py --index DIR [--checkpoint FILE] [--compare DIR_B] --latency --browser

Starts `python app.py` in a subprocess on a free port (or uses --url), prints p50 / p95 latency
per endpoint, requests per second and failures. Exit status 1 if any request failed.
tests/test_explorer_api_load.py runs the same `run_load` for a shorter time against an in-process
app.

--latency and --browser start the app through bench/timed_app.py, which logs every event's
server-side time (Gradio's processing and the handler) and the time inside the index.
--latency: /similar and /top_segments (k = 12) and, with a checkpoint, /group_image of a
640 x 480 photo, one request at a time through gradio_client, with and without downloading the
result files: round trip p50 / p95, server-side p50, index p50 and the share of the round trip
spent outside the index (bench/api_latency.py). --browser: every interaction of the page in
Debian's chromium, click to result on screen, and its server-side time (bench/browser_latency.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LoadResult:
    seconds: float  # wall time of the run
    latencies: dict[str, list[float]] = field(default_factory=dict)  # endpoint -> seconds
    failures: list[str] = field(default_factory=list)  # "endpoint: error" per failed request

    def summary(self) -> dict:
        out = {"seconds": round(self.seconds, 1), "failures": len(self.failures)}
        for name, values in sorted(self.latencies.items()):
            values = np.asarray(values)
            out[name] = {
                "requests": int(values.size),
                "p50_ms": round(float(np.percentile(values, 50)) * 1000, 1)
                if values.size
                else None,
                "p95_ms": round(float(np.percentile(values, 95)) * 1000, 1)
                if values.size
                else None,
            }
        total = sum(len(v) for v in self.latencies.values())
        out["requests_per_s"] = round(total / self.seconds, 2) if self.seconds else 0.0
        return out


def run_load(
    url: str,
    images: list[Path],
    num_slots: int,
    users: int = 8,
    seconds: float = 30.0,
    seed: int = 0,
    download: bool = True,
) -> LoadResult:
    """Each of `users` threads opens its own gradio_client.Client and, until `seconds` have
    passed, alternates /group_image (a random file of `images`) and /similar (a random slot id
    in [0, num_slots), k = 12). Latency = the client's predict() wall time, including the
    download of the result files (the overlay, 12 thumbnails) unless download=False."""
    from gradio_client import Client, handle_file

    result = LoadResult(seconds=0.0, latencies={"group_image": [], "similar": []})
    lock = threading.Lock()
    deadline = [0.0]
    began = [0.0]

    def set_clock() -> None:  # runs once, when every client is connected, before any starts
        began[0] = time.monotonic()
        deadline[0] = began[0] + seconds

    start = threading.Barrier(users + 1, action=set_clock)

    def user(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        try:
            client = Client(url, verbose=False, download_files=download)
        except Exception as error:  # noqa: BLE001 - counted as a failure
            with lock:
                result.failures.append(f"connect: {error}")
            start.wait()
            return
        start.wait()
        turn = index % 2
        while time.monotonic() < deadline[0]:
            name = ("group_image", "similar")[turn]
            began = time.monotonic()
            try:
                if name == "group_image":
                    overlay, table = client.predict(
                        handle_file(str(rng.choice(images))), api_name="/group_image"
                    )
                    ok = bool(overlay) and bool(table["data"])
                else:
                    gallery, table = client.predict(
                        rng.randrange(num_slots), 12, api_name="/similar"
                    )
                    ok = len(gallery) > 0
                if not ok:
                    raise RuntimeError("empty result")
                with lock:
                    result.latencies[name].append(time.monotonic() - began)
            except Exception as error:  # noqa: BLE001 - every failure is reported
                with lock:
                    result.failures.append(f"{name}: {type(error).__name__}: {error}")
            turn = 1 - turn

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    result.seconds = time.monotonic() - began[0]
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(
    index: Path,
    checkpoint: Path | None,
    cache: Path,
    timeout: float = 180.0,
    extra: tuple[str, ...] = (),
    timing_log: Path | None = None,
) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free port (without --checkpoint when None: browsing only; `extra`
    arguments such as --compare DIR), through bench/timed_app.py when `timing_log` is given;
    returns (process, url) once it answers HTTP (RuntimeError after `timeout` seconds)."""
    port = free_port()
    script = [str(ROOT / "app.py")]
    if timing_log is not None:
        script = [str(ROOT / "bench" / "timed_app.py"), str(timing_log)]
    command = [sys.executable, *script, "--index", str(index)]
    if checkpoint is not None:
        command += ["--checkpoint", str(checkpoint)]
    command += ["--port", str(port), "--cache", str(cache), *extra]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"app.py did not answer within {timeout:.0f} s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="index directory")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="its checkpoint (needed for uploads)"
    )
    parser.add_argument("--url", default=None, help="use a running app instead of starting one")
    parser.add_argument("--users", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration (default 30)")
    parser.add_argument(
        "--images",
        type=int,
        default=20,
        help="distinct collection images used as uploads (default 20)",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="do not download result files (server time only)"
    )
    parser.add_argument("--cache", type=Path, default=Path("cache/bench"), help="app cache dir")
    parser.add_argument(
        "--latency", action="store_true", help="one user: round trips and server-side times"
    )
    parser.add_argument(
        "--browser", action="store_true", help="every page interaction in chromium, timed"
    )
    parser.add_argument("--compare", type=Path, default=None, help="app.py --compare DIR_B")
    parser.add_argument(
        "--requests", type=int, default=60, help="--latency: requests per endpoint (default 60)"
    )
    parser.add_argument(
        "--rounds", type=int, default=10, help="--browser: rounds of interactions (default 10)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    return parser


def measure_latency(args, index) -> dict:
    """--latency / --browser: the app through bench/timed_app.py, one user at a time."""
    from api_latency import photo_640x480, run_latency
    from browser_latency import browser_summary, run_browser

    work = Path(tempfile.mkdtemp(prefix="app-latency-"))
    log = work / "timing.jsonl"
    log.touch()
    photo = photo_640x480(work) if args.checkpoint is not None else None
    extra = ("--compare", str(args.compare)) if args.compare is not None else ()
    began = time.perf_counter()
    process, url = start_app(
        args.index, args.checkpoint, work / "cache", 1200, extra, timing_log=log
    )
    out = {"start_s": round(time.perf_counter() - began, 1)}
    try:
        if args.latency:
            out["api"] = run_latency(
                url, log, index.num_slots, index.num_prototypes, args.requests, photo
            )
        if args.browser:
            compare = None
            if args.compare is not None:
                from indexing import ConceptIndex

                compare = (index.num_prototypes, ConceptIndex.open(args.compare).num_prototypes)
            times = run_browser(url, log, args.index, args.rounds, photo, compare)
            out["browser"] = browser_summary(times)
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from indexing import ConceptIndex

    index = ConceptIndex.open(args.index)
    if args.latency or args.browser:
        from machine import cpu_name

        summary = {
            "machine": f"{cpu_name()}, {os.cpu_count()} cores",
            "index": str(args.index),
            "slots": index.num_slots,
            **measure_latency(args, index),
        }
        print(json.dumps(summary, indent=1))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1) + "\n")
        return 0
    if args.checkpoint is None:
        print("error: the load test uploads images: give --checkpoint", file=sys.stderr)
        return 2
    table = index.images_table()
    images = [index.image_root / p for p in table["path"].iloc[: args.images]]
    process = None
    url = args.url
    if url is None:
        process, url = start_app(args.index, args.checkpoint, args.cache)
    try:
        result = run_load(
            url, images, index.num_slots, args.users, args.seconds, download=not args.no_download
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    print(json.dumps(result.summary(), indent=1))
    for failure in result.failures[:10]:
        print("failure:", failure, file=sys.stderr)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
