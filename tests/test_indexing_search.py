"""faiss layer: exact search, IVF(-PQ) layout and recall, GPU placement (skipped without)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from indexing.search import (
    SlotSearcher,
    build_faiss,
    gpu_available,
    ivf_layout,
    load_faiss,
    save_faiss,
)


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_search_is_exact_with_custom_ids(tmp_path) -> None:
    x = _unit(500, 16)
    ids = np.arange(500, dtype=np.int64) * 10 + 7  # ids need not be positions
    index, info = build_faiss(x, ids, "flat")
    assert info["factory"] == "IDMap2,Flat" and info["vectors"] == 500
    save_faiss(index, tmp_path / "a.faiss")
    searcher = SlotSearcher(load_faiss(tmp_path / "a.faiss"), gpu=False)
    sims, found = searcher.search(x[:3], 5)
    expected = np.argsort(-(x[:3] @ x.T), axis=1)[:, :5]
    np.testing.assert_array_equal(found, ids[expected])
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(searcher.reconstruct(ids[4]), x[4])
    assert searcher.search(x[:1], 10_000)[1].shape == (1, 500)  # k capped at the vector count


def test_ivf_layout() -> None:
    assert ivf_layout(1_000_000, 256) == ("IVF4000,PQ32np", 64)
    assert ivf_layout(5000, 256)[0] == "IVF128,Flat"  # too few points to train PQ codes
    assert ivf_layout(100_000, 12)[0].endswith(",Flat")  # D not a multiple of 8
    factory, nprobe = ivf_layout(50, 16)
    assert factory == "IVF1,Flat" and nprobe == 1


def test_ivf_pq_recall(tmp_path) -> None:
    """1-recall@10: the exact nearest neighbour of a query is among IVF-PQ's first 10."""
    centres = _unit(40, 16, seed=1)
    rng = np.random.default_rng(2)
    x = centres[rng.integers(0, 40, 256 * 39)] + 0.2 * rng.standard_normal((256 * 39, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    index, info = build_faiss(x, np.arange(len(x)), "ivf")
    assert info["type"] == "ivf" and ",PQ2" in info["factory"] and info["nprobe"] >= 1
    save_faiss(index, tmp_path / "ivf.faiss")
    searcher = SlotSearcher(load_faiss(tmp_path / "ivf.faiss", info["nprobe"]), gpu=False)
    queries = x[:200] + 0.05 * rng.standard_normal((200, 16)).astype(np.float32)
    _, found = searcher.search(queries, 10)
    nearest = np.argmax(queries @ x.T, axis=1)
    recall = np.mean([n in f for n, f in zip(nearest, found)])
    assert recall > 0.8, recall
    assert searcher.reconstruct(5).shape == (16,)  # direct map for slot vectors


def test_concurrent_searches(tmp_path) -> None:
    x = _unit(2000, 16)
    searcher = SlotSearcher(build_faiss(x, np.arange(2000))[0], gpu=False)
    expected = searcher.search(x[:50], 5)[1]
    results = [None] * 8

    def work(i: int) -> None:
        results[i] = searcher.search(x[:50], 5)[1]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, expected) for r in results)


def test_gpu_is_used_only_when_faiss_has_one() -> None:
    searcher = SlotSearcher(build_faiss(_unit(100, 16), np.arange(100))[0])
    assert searcher.on_gpu == gpu_available()
    if not gpu_available():
        with pytest.raises(RuntimeError, match="no GPU support"):
            SlotSearcher(build_faiss(_unit(10, 16), np.arange(10))[0], gpu=True)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="faiss without GPU support or no GPU")
def test_gpu_search_matches_cpu() -> None:
    x = _unit(1000, 32)
    index = build_faiss(x, np.arange(1000))[0]
    cpu = SlotSearcher(index, gpu=False).search(x[:20], 5)[1]
    gpu = SlotSearcher(index, gpu=True)
    assert gpu.on_gpu
    np.testing.assert_array_equal(gpu.search(x[:20], 5)[1], cpu)
