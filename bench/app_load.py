"""The web app under load: N concurrent gradio_client users, each alternating an upload
(/group_image) and a similarity query (/similar), for a fixed time.

    python bench/app_load.py --index DIR --checkpoint FILE [--users 8] [--seconds 30]

Starts `python app.py` in a subprocess on a free port (or uses --url), prints p50 / p95 latency
per endpoint, requests per second and failures. Exit status 1 if any request failed.
tests/test_explorer_api_load.py runs the same `run_load` for a shorter time against an in-process
app.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
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
    index: Path, checkpoint: Path | None, cache: Path, timeout: float = 180.0
) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free port (without --checkpoint when None: browsing only); returns
    (process, url) once it answers HTTP (RuntimeError after `timeout` seconds)."""
    port = free_port()
    command = [sys.executable, str(ROOT / "app.py"), "--index", str(index)]
    if checkpoint is not None:
        command += ["--checkpoint", str(checkpoint)]
    command += ["--port", str(port), "--cache", str(cache)]
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
    parser.add_argument("--checkpoint", type=Path, required=True, help="its checkpoint")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from indexing import ConceptIndex

    index = ConceptIndex.open(args.index)
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
