"""faiss layer: exact search, the index type by size, IVF layout and recall against exact
search, filtered search (faiss selectors, and the fetch-and-filter path of GPU indexes) against
brute force, memory-mapped loading, GPU placement (skipped without)."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from indexing.query.search import (
    SlotSearcher,
    exact_search,
    gpu_available,
    id_selector,
    recall_at_k,
)
from indexing.store.faiss_index import (
    FLAT_MAX_SLOTS,
    build_faiss,
    choose_index_type,
    ivf_layout,
    load_faiss,
    save_faiss,
    stored_vectors,
)


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n: int, d: int, centres: int = 40, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = _unit(centres, d, seed)[rng.integers(0, centres, n)] + 0.2 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_flat_search_is_exact(tmp_path) -> None:
    x = _unit(500, 16)
    index, info = build_faiss(x, "flat")
    assert info["factory"] == "Flat" and info["vectors"] == 500 and info["type"] == "flat"
    save_faiss(index, tmp_path / "a.faiss")
    searcher = SlotSearcher(load_faiss(tmp_path / "a.faiss"), gpu=False)
    assert not searcher.approximate
    sims, found = searcher.search(x[:3], 5)
    expected = np.argsort(-(x[:3] @ x.T), axis=1)[:, :5]
    np.testing.assert_array_equal(found, expected)  # faiss id = row = slot id
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(searcher.reconstruct(4), x[4])
    assert searcher.search(x[:1], 10_000)[1].shape == (1, 500)  # k capped at the vector count


def test_index_type_follows_the_size() -> None:
    assert choose_index_type(1000) == "flat"
    assert choose_index_type(FLAT_MAX_SLOTS) == "flat"
    assert choose_index_type(FLAT_MAX_SLOTS + 1) == "ivf"
    assert choose_index_type(10, "ivf") == "ivf" and choose_index_type(10**8, "flat") == "flat"
    with pytest.raises(ValueError, match="index type"):
        choose_index_type(10, "hnsw")
    assert build_faiss(_unit(300, 8))[1]["type"] == "flat"  # auto at a small size
    assert build_faiss(_unit(20, 8), "ivf")[1]["type"] == "flat"  # too few to train a list


def test_ivf_layout() -> None:
    assert ivf_layout(1_000_000) == ("IVF512,SQ8,RFlat", 512, 32, 4)
    assert ivf_layout(10_000_000) == ("IVF2048,SQ8,RFlat", 2048, 64, 4)
    assert ivf_layout(3000).nlist == 32 and ivf_layout(3000).nprobe == 16
    assert ivf_layout(200).nlist == 5  # at least 39 training points per list
    assert ivf_layout(50) == ("IVF1,SQ8,RFlat", 1, 1, 4)


def test_ivf_recall_against_exact_search(tmp_path) -> None:
    """recall@10 of the IVF index against brute force on clustered vectors is >= 0.95, and
    its similarities are exact (re-ranked with the stored vectors)."""
    x = _clustered(6000, 16)
    index, info = build_faiss(x, "ivf")
    assert info["type"] == "ivf" and info["factory"] == "IVF64,SQ8,RFlat"
    save_faiss(index, tmp_path / "ivf.faiss")
    searcher = SlotSearcher(load_faiss(tmp_path / "ivf.faiss"), False, info["nprobe"], 4)
    assert searcher.approximate
    queries = x[:300]
    sims, found = searcher.search(queries, 10)
    _, exact = exact_search(x, queries, 10)
    assert recall_at_k(found, exact) >= 0.95
    valid = found >= 0
    cosines = np.einsum("qd,qkd->qk", queries, x[np.maximum(found, 0)])  # (Q, k)
    np.testing.assert_allclose(sims[valid], cosines[valid], atol=1e-5)
    np.testing.assert_array_equal(searcher.reconstruct(5), x[5])  # the exact vector


def _brute_force(x: np.ndarray, q: np.ndarray, k: int, admitted: np.ndarray) -> np.ndarray:
    """(k,) ids of the k admitted rows of x nearest to q (inner product), best first."""
    rows = np.flatnonzero(admitted)
    return rows[np.argsort(-(x[rows] @ q), kind="stable")[:k]]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
@pytest.mark.parametrize("fetch", [False, True], ids=["selectors", "fetch-and-filter"])
def test_filtered_search_against_brute_force(kind, fetch) -> None:
    """exclude (an image's id range) and only (a prototype's ids) keep exactly the admitted ids;
    flat finds the brute-force neighbours among them, ivf nearly all (lists it does not visit
    may hold some); similarities are exact either way. fetch-and-filter is the path of GPU
    indexes, which take no selectors (run here on the CPU index)."""
    x = _clustered(3000, 16)
    index, info = build_faiss(x, kind)
    searcher = SlotSearcher(index, False, info["nprobe"], info["k_factor"])
    searcher.on_gpu = fetch  # the GPU path on a CPU index: the same results, without selectors
    only = np.flatnonzero(np.random.default_rng(5).random(len(x)) < 0.25)  # "one prototype"
    ids = np.arange(len(x))
    hits = total = 0
    for i, q in enumerate(x[:40:4]):
        exclude = (i * 70, i * 70 + 30)  # the query's "image", which holds the query itself
        outside = (ids < exclude[0]) | (ids >= exclude[1])
        cases = [
            ({"exclude": exclude}, outside),
            ({"only": only}, np.isin(ids, only)),
            ({"exclude": exclude, "only": only}, outside & np.isin(ids, only)),
        ]
        for kwargs, admitted in cases:
            sims, found = searcher.search(q, 10, **kwargs)
            found, sims = found[0][found[0] >= 0], sims[0][found[0] >= 0]
            assert admitted[found].all(), kwargs
            np.testing.assert_allclose(sims, x[found] @ q, atol=1e-5)
            expected = _brute_force(x, q, 10, admitted)
            if kind == "flat":
                np.testing.assert_array_equal(found, expected)
            hits, total = hits + len(set(found) & set(expected)), total + len(expected)
    assert hits / total >= (1.0 if kind == "flat" else 0.9)


def test_id_selector() -> None:
    assert id_selector() is None
    ids = np.arange(10, dtype=np.int64)
    admitted = [id_selector((2, 5)).is_member(int(i)) for i in ids]
    assert admitted == [True, True, False, False, False, True, True, True, True, True]
    selector = id_selector((2, 5), only=np.array([1, 3, 7]))
    assert [int(i) for i in ids if selector.is_member(int(i))] == [1, 7]


def test_exact_search() -> None:
    x, q = _unit(1000, 8), _unit(7, 8, seed=3)
    sims, rows = exact_search(x, q, 5)
    expected = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(q @ x.T, expected, 1), atol=1e-6)
    assert exact_search(x[:3], q, 5)[1].shape == (7, 3)
    assert recall_at_k(np.array([[1, 2, -1]]), np.array([[1, 2, 3]])) == pytest.approx(2 / 3)


def test_loaded_index_is_memory_mapped(tmp_path) -> None:
    """Reading an index maps its file: nothing is copied into memory until it is searched."""
    for kind in ("flat", "ivf"):
        path = tmp_path / f"{kind}.faiss"
        save_faiss(build_faiss(_clustered(3000, 16), kind)[0], path)
        searcher = SlotSearcher(load_faiss(path), gpu=False)
        assert str(path) in open("/proc/self/maps").read()  # noqa: SIM115
        assert not searcher.vectors.flags.writeable and not searcher.vectors.flags.owndata
        vectors = stored_vectors(load_faiss(path))  # the view keeps its index alive
        gc.collect()
        np.testing.assert_array_equal(vectors[-1], searcher.vectors[-1])


def test_concurrent_searches(tmp_path) -> None:
    x = _unit(2000, 16)
    searcher = SlotSearcher(build_faiss(x)[0], gpu=False)
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
    searcher = SlotSearcher(build_faiss(_unit(100, 16))[0])
    assert searcher.on_gpu == gpu_available()
    if not gpu_available():
        with pytest.raises(RuntimeError, match="no GPU support"):
            SlotSearcher(build_faiss(_unit(10, 16))[0], gpu=True)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="faiss without GPU support or no GPU")
def test_gpu_search_matches_cpu() -> None:
    x = _unit(1000, 32)
    index = build_faiss(x)[0]
    cpu = SlotSearcher(index, gpu=False).search(x[:20], 5)[1]
    gpu = SlotSearcher(index, gpu=True)
    assert gpu.on_gpu
    np.testing.assert_array_equal(gpu.search(x[:20], 5)[1], cpu)
