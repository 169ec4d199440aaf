"""An index of millions of segments: build it synthetically, then time opening and queries.

    python bench/index_scale.py --slots 1000000 --out /tmp/scale-1m            # write only
    python bench/index_scale.py --slots 1000000 --out /tmp/scale-1m --measure  # write + measure
    python bench/index_scale.py --index /tmp/scale-1m --measure --app          # measure + app

The index is synthetic (bench/synthetic_index.py) but in the real format, written by the same
code as `python -m indexing build`. Measured: build time and disk size; opening time with the
index's pages evicted from the page cache first (posix_fadvise, this index's files only) and
again warm; p50 / p95 wall time and median CPU time of similar(slot_id, k=10),
top_segments(prototype, k=12) and image(id) over random arguments after 20 warm-up calls, once
with the cache as the eviction left it ("cold": queries read their pages from disk) and once
after reading the index's files ("warm"); recall@10 of the faiss search against exact search
for --queries stored slot vectors; with --app, `python app.py` in a subprocess: time to
its first HTTP answer, its resident memory (RSS, and its anonymous part) after opening and
after the requests, p50 / p95 of /similar and /top_segments (k=12) through gradio_client,
thumbnails included. Prints a JSON summary and Markdown rows; --json FILE keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from app_load import start_app  # bench/ helpers, beside this script
from machine import cpu_name
from synthetic_index import SyntheticConfig, write_synthetic_index

WARMUP = 20


def disk_bytes(folder: Path) -> int:
    """Bytes the folder's files occupy on disk (allocated blocks; hard links counted once)."""
    seen, total = set(), 0
    for path in Path(folder).rglob("*"):
        info = path.lstat()
        if path.is_file() and (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def evict(folder: Path) -> None:
    """Drop the folder's files from the page cache (only these files: others keep theirs)."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm_up(folder: Path) -> None:
    """Read the folder's files once, as a long-running server's page cache would hold them."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass


def memory(pid: int | str = "self") -> dict:
    """VmRSS, RssAnon (heap: not backed by a file) and RssFile (mapped files) in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95)}


def _timed(call, arguments: list) -> dict:
    """Wall-time percentiles, and the median CPU time of the calling thread (what the call
    costs, whatever else the machine runs; faiss searches one query on the calling thread)."""
    for argument in arguments[:WARMUP]:
        call(argument)
    times, cpu = [], []
    for argument in arguments:
        began, began_cpu = time.perf_counter(), time.thread_time()
        call(argument)
        times.append(time.perf_counter() - began)
        cpu.append(time.thread_time() - began_cpu)
    return percentiles(times) | {"cpu_p50_ms": round(float(np.median(cpu)) * 1000, 2)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_library(index_dir: Path, queries: int, seed: int = 0) -> dict:
    """Open times (cold and warm), query latencies and recall@10 of a ConceptIndex."""
    from indexing import ConceptIndex
    from indexing.query.search import exact_search, recall_at_k

    evict(index_dir)
    began = time.perf_counter()
    index = ConceptIndex.open(index_dir, gpu=False)
    cold = time.perf_counter() - began
    began = time.perf_counter()
    ConceptIndex.open(index_dir, gpu=False)
    warm = time.perf_counter() - began
    rng = np.random.default_rng(seed)
    ids = index.image_ids()
    result = {"open_cold_s": round(cold, 3), "open_warm_s": round(warm, 3)}
    # first with the page cache as the eviction left it (each query reads its pages from
    # disk), then with the index's files read once (a server that has run for a while)
    for cache in ("cold", "warm"):
        if cache == "warm":
            warm_up(index_dir)
        slots = rng.integers(0, index.num_slots, queries).tolist()
        prototypes = rng.integers(0, index.num_prototypes, queries).tolist()
        images = [ids[i] for i in rng.integers(0, len(ids), queries)]
        result[cache] = {
            "similar": _timed(lambda s: index.similar(slot_id=s, k=10), slots),
            "top_segments": _timed(lambda p: index.top_segments(p, 12), prototypes),
            "image": _timed(index.image, images),
        }
    searcher = index._searcher
    vectors = np.stack([searcher.reconstruct(s) for s in slots])
    _, found = searcher.search(vectors, 10)
    began = time.perf_counter()
    _, exact = exact_search(searcher.vectors, vectors, 10)
    result["exact_search_ms_per_query"] = round((time.perf_counter() - began) / queries * 1000, 1)
    result["recall_at_10"] = round(recall_at_k(found, exact), 4)
    result["faiss"] = index.manifest["faiss"]["factory"]
    return result


def measure_app(index_dir: Path, requests: int, seed: int = 0) -> dict:
    """`python app.py` on the index: start-up, memory, /similar and /top_segments latencies."""
    from gradio_client import Client

    from indexing import ConceptIndex

    index = ConceptIndex.open(index_dir, gpu=False)
    num_slots, num_prototypes = index.num_slots, index.num_prototypes
    del index
    cache = Path(tempfile.mkdtemp(prefix="scale-cache-"))
    began = time.perf_counter()
    process, url = start_app(index_dir, None, cache, timeout=1200)  # a busy machine: slow
    try:
        result = {"start_s": round(time.perf_counter() - began, 1)}
        result["memory_open_mib"] = memory(process.pid)
        client = Client(url, verbose=False)
        rng = np.random.default_rng(seed)
        slots = rng.integers(0, num_slots, requests).tolist()
        prototypes = rng.integers(0, num_prototypes, requests).tolist()
        for name, arguments in (("similar", slots), ("top_segments", prototypes)):
            before = cpu_seconds(process.pid)
            result[name] = _timed(
                lambda a, name=name: client.predict(a, 12, api_name=f"/{name}"), arguments
            )
            calls = len(arguments) + min(WARMUP, len(arguments))
            result[name].pop("cpu_p50_ms")  # the client's: the server's mean instead
            result[name]["server_cpu_ms"] = round(
                (cpu_seconds(process.pid) - before) / calls * 1000, 1
            )
        result["memory_after_mib"] = memory(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(cache, ignore_errors=True)
    return result


def markdown(summary: dict) -> str:
    """A row for the table in docs/BENCHMARKS.md."""
    lib, app = summary.get("library", {}), summary.get("app", {})

    def pair(d: dict | None) -> str:
        return f"{d['p50_ms']} / {d['p95_ms']}" if d else "-"

    mem = app.get("memory_open_mib", {})
    warm, cold = lib.get("warm", {}), lib.get("cold", {})

    def both(name: str) -> str:  # warm p50 / p95 (cold p50)
        return f"{pair(warm.get(name))} ({cold[name]['p50_ms']})" if name in cold else "-"

    cells = [
        f"{summary['slots']:,}",
        f"{summary['images']:,}",
        summary["dim"],
        lib.get("faiss", "-"),
        summary.get("build_s", "-"),
        summary["index_mib"],
        f"{lib.get('open_cold_s', '-')} / {lib.get('open_warm_s', '-')}",
        both("similar"),
        both("top_segments"),
        both("image"),
        lib.get("recall_at_10", "-"),
        f"{mem.get('VmRSS', '-')} ({mem.get('RssAnon', '-')})",
        pair(app.get("similar")),
        pair(app.get("top_segments")),
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, help="segments of the synthetic index to write")
    parser.add_argument("--out", type=Path, help="index directory to write (images beside it)")
    parser.add_argument("--index", type=Path, help="measure this existing index instead")
    parser.add_argument("--dim", type=int, default=32, help="D: 32 as the demo model, 256 paper")
    parser.add_argument("--prototypes", type=int, default=32, help="K: 32 as the demo model")
    parser.add_argument(
        "--index-type",
        choices=("auto", "flat", "ivf"),
        default="auto",
        help="auto (the default of `indexing build`): flat up to 250,000 slots, ivf above",
    )
    parser.add_argument("--measure", action="store_true", help="time opening and queries")
    parser.add_argument("--app", action="store_true", help="also start app.py and time its API")
    parser.add_argument("--queries", type=int, default=200, help="library calls per query kind")
    parser.add_argument("--requests", type=int, default=60, help="app requests per endpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of the index and the queries")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.index is None) == (args.out is None) or (args.out is not None and not args.slots):
        print("error: give --slots N --out DIR, or --index DIR", file=sys.stderr)
        return 2
    summary: dict = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, no GPU"}
    index_dir = args.index
    if args.out is not None:
        cfg = SyntheticConfig(
            slots=args.slots,
            dim=args.dim,
            prototypes=args.prototypes,
            index_type=args.index_type,
            seed=args.seed,
        )
        began = time.perf_counter()
        index_dir = write_synthetic_index(cfg, args.out)
        summary["build_s"] = round(time.perf_counter() - began, 1)
    manifest = json.loads((Path(index_dir) / "manifest.json").read_text())
    summary.setdefault("build_s", manifest.get("build", {}).get("seconds"))  # as recorded
    summary.update(
        index=str(index_dir),
        slots=manifest["counts"]["slots"],
        images=manifest["counts"]["images"],
        dim=manifest["model"]["dim"],
        index_mib=round(disk_bytes(index_dir) / 2**20, 1),
        images_mib=round(disk_bytes(manifest["image_root"]) / 2**20, 1),
        files=sum(1 for p in Path(index_dir).rglob("*") if p.is_file()),
    )

    def keep() -> None:  # after each step, so that a later failure loses nothing measured
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1) + "\n")

    keep()
    if args.measure:
        summary["library"] = measure_library(Path(index_dir), args.queries, args.seed)
        keep()
    if args.app:
        summary["app"] = measure_app(Path(index_dir), args.requests, args.seed)
        keep()
    print(json.dumps(summary, indent=1))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
