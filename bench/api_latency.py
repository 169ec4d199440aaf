"""One gradio_client user at a time: the round trip of each API endpoint and its server side.

Used by bench/app_load.py --latency against an app started by bench/timed_app.py, whose log
gives each request's server-side time (Blocks.process_api: Gradio's pre- and postprocessing
and the handler), the handler's own time and the time inside the index. Requests are
sequential, so the n-th request and the n-th line of the log are the same event.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

WARMUP = 10  # requests per endpoint before the measured ones (connections, first imports)


def _p(values, q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 1)


def summarise(round_trips: list[float], events: list[dict]) -> dict:
    """Percentiles of the client's round trips and the server's figures for the same requests;
    outside_index = the share of the round trip not spent inside the index (median)."""
    index = [e.get("index_s") or 0.0 for e in events]
    outside = [1 - i / t for i, t in zip(index, round_trips)]
    return {
        "requests": len(round_trips),
        "round_trip_p50_ms": _p(round_trips, 50),
        "round_trip_p95_ms": _p(round_trips, 95),
        "server_p50_ms": _p([e["process_s"] for e in events], 50),
        "handler_p50_ms": _p([e["handler_s"] or 0.0 for e in events], 50),
        "index_p50_ms": _p(index, 50),
        "outside_index_share": round(float(np.median(outside)), 3),
    }


def _read_log(path: Path, offset: int) -> tuple[list[dict], int]:
    with path.open() as f:
        f.seek(offset)
        text = f.read()
        return [json.loads(line) for line in text.splitlines() if line.strip()], f.tell()


def measure_endpoint(client, log: Path, api_name: str, arguments: list[tuple]) -> dict:
    """Round trips of client.predict(*a, api_name=...) for each of `arguments` (after WARMUP
    of them), with the server's log lines for the measured requests."""
    for args in arguments[:WARMUP]:
        client.predict(*args, api_name=api_name)
    time.sleep(0.2)  # the warm-up's last log line
    _, offset = _read_log(log, 0)
    round_trips = []
    for args in arguments[WARMUP:]:
        began = time.perf_counter()
        client.predict(*args, api_name=api_name)
        round_trips.append(time.perf_counter() - began)
    time.sleep(0.2)
    events, _ = _read_log(log, offset)
    events = [e for e in events if e["event"] == api_name.strip("/")]
    return summarise(round_trips, events)


def run_latency(
    url: str,
    log: Path,
    num_slots: int,
    num_prototypes: int,
    requests: int = 60,
    photo: Path | None = None,
    seed: int = 0,
) -> dict:
    """/similar and /top_segments (k = 12) with random arguments, once with gradio_client's
    default of downloading the result files (the 12 thumbnails) and once without; /group_image
    of `photo` when given. -> {"<endpoint> <download|no download>": summary}."""
    from gradio_client import Client, handle_file

    rng = np.random.default_rng(seed)
    n = WARMUP + requests
    out = {}
    for download in (True, False):
        client = Client(url, verbose=False, download_files=download)
        mode = "files downloaded" if download else "no download"
        slots = [(int(s), 12) for s in rng.integers(0, num_slots, n)]
        prototypes = [(int(p), 12) for p in rng.integers(0, num_prototypes, n)]
        out[f"/similar, {mode}"] = measure_endpoint(client, log, "/similar", slots)
        out[f"/top_segments, {mode}"] = measure_endpoint(client, log, "/top_segments", prototypes)
        if photo is not None:
            uploads = [(handle_file(str(photo)),)] * min(n, WARMUP + 20)
            out[f"/group_image, {mode}"] = measure_endpoint(client, log, "/group_image", uploads)
    return out


def photo_640x480(folder: Path) -> Path:
    """A real 640 x 480 photograph: the centre of scikit-image's motorcycle_left.png (741 x
    500, shipped in its wheel: no download), as a JPEG."""
    import skimage.data
    from PIL import Image

    source = Path(skimage.data.__file__).parent / "motorcycle_left.png"
    image = Image.open(source).convert("RGB")
    left, top = (image.width - 640) // 2, (image.height - 480) // 2
    path = Path(folder) / "photo_640x480.jpg"
    image.crop((left, top, left + 640, top + 480)).save(path, quality=90)
    return path
