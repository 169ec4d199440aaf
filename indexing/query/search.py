"""k-nearest-neighbour search over an index's faiss file (indexing.store.faiss_index).

SlotSearcher searches one faiss index (CPU, or GPU when asked), with an image's slots left out
or only one prototype's slots admitted (faiss selectors); filtered_search falls back to an
exact search where an approximate (IVF) index may miss admitted slots. Searches release the
GIL, so several threads may search one index at once (a GPU index is searched under a lock).
"""

from __future__ import annotations

import math
import threading

import faiss
import numpy as np

from indexing.store.faiss_index import stored_vectors

# Searches smaller than this many query x vector pairs run on one OpenMP thread: waking more
# threads costs more than it saves, and on a busy CPU (a web app's concurrent users) it turned a
# 0.4 ms query over 16k slots into 30 ms (2 cores, docs/BENCHMARKS.md).
SINGLE_THREAD_WORK = 1_000_000
# similar() with a prototype filter on an IVF index: the lists nearest the query may hold few of
# the prototype's slots, so a prototype of at most this many slots is searched exactly (a few ms),
# and a larger one exactly when the lists visited hold fewer than k of them.
EXACT_FILTER_POOL = 20_000


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner product (faiss.knn, BLAS in blocks): vectors (S, D) float32 (a mapped
    view is not copied), queries (Q, D) -> similarities (Q, k) and rows (Q, k) int64, best
    first (k capped at S)."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = min(k, len(vectors))
    if k == 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    return faiss.knn(q, x, k, metric=faiss.METRIC_INNER_PRODUCT)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found_i & exact_i| / k for id arrays (Q, k) (-1 counts as a miss)."""
    k = exact.shape[1]
    hits = [len(set(f[f >= 0].tolist()) & set(e.tolist())) for f, e in zip(found, exact)]
    return float(np.mean(hits)) / k if len(hits) else 1.0


def id_selector(
    exclude: tuple[int, int] | None = None, only: np.ndarray | None = None
) -> faiss.IDSelector | None:
    """The faiss selector admitting the ids in `only` (all when None) except those in
    [exclude[0], exclude[1]); None when nothing is filtered. Search parameters do not keep
    their selector alive: hold a reference until the search returns."""
    if only is not None:
        ids = np.asarray(only, dtype=np.int64)
        if exclude is not None:
            ids = ids[(ids < exclude[0]) | (ids >= exclude[1])]
        return faiss.IDSelectorBatch(np.ascontiguousarray(ids))
    if exclude is not None:
        return faiss.IDSelectorNot(faiss.IDSelectorRange(int(exclude[0]), int(exclude[1])))
    return None


def gpu_available() -> bool:
    """True with a faiss build that has GPU support and at least one visible GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class SlotSearcher:
    """Thread-safe k-nearest-neighbour search over one faiss index (CPU, or GPU when asked)."""

    def __init__(
        self,
        index: faiss.Index,
        gpu: bool | None = None,
        nprobe: int | None = None,
        k_factor: int | None = None,
    ):
        """gpu: None = use a GPU when faiss has one; False = CPU; True = GPU or error.
        nprobe, k_factor: search settings of an IVF index (the manifest's)."""
        self.cpu_index = index  # kept for stored vectors, which GPU indexes do not expose
        self.index = index
        self.vectors = stored_vectors(index)  # (S, D), memory-mapped with the index
        self.approximate = hasattr(faiss.downcast_index(index), "refine_index")
        self._nprobe, self._k_factor = int(nprobe or 8), float(k_factor or 4)
        self.on_gpu = False
        self._lock = threading.Lock()
        self._threads = faiss.omp_get_max_threads()
        if gpu or (gpu is None and gpu_available()):
            self._to_gpu(required=bool(gpu))

    def _to_gpu(self, required: bool) -> None:
        if not gpu_available():
            if required:
                raise RuntimeError("faiss has no GPU support here (install faiss-gpu)")
            return
        try:
            self._resources = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(self._resources, 0, self.cpu_index)
            self.on_gpu = True
        except (RuntimeError, AttributeError):  # an index type without a GPU version
            if required:
                raise
            self.index = self.cpu_index

    @property
    def ntotal(self) -> int:
        return int(self.cpu_index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.cpu_index.d)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: tuple[int, int] | None = None,
        only: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, D) -> similarities (Q, k) float32 and ids (Q, k) int64 (-1: none),
        best first; k is capped at the number of vectors.

        exclude: ids [start, end) left out (one image's slots); only: (n,) int64 ids, the only
        ones admitted (one prototype's slots). Both are faiss selectors (IDSelectorNot of an
        IDSelectorRange, IDSelectorBatch) applied inside the search; a GPU index, which takes
        no selectors, asks for more neighbours and filters them. An approximate index may
        return fewer than k (-1 padded) when the lists it visits run out of admitted ids.
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.ntotal))
        if self.ntotal == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if self.on_gpu:
            return self._search_by_fetch(q, k, exclude, only)
        # per calling thread: each request thread chooses its own OpenMP team size
        # (an IVF query scans a few lists: one thread unless a batch of queries)
        single = len(q) < 16 if self.approximate else len(q) * self.ntotal < SINGLE_THREAD_WORK
        faiss.omp_set_num_threads(1 if single else self._threads)
        selector = id_selector(exclude, only)
        if self.approximate:
            # the selector goes to the IVF step: IndexRefine's own `sel` is ignored
            ivf = faiss.SearchParametersIVF(nprobe=self._nprobe, sel=selector)
            params = faiss.IndexRefineSearchParameters(
                k_factor=self._k_factor, base_index_params=ivf
            )
            return self.index.search(q, k, params=params)
        if selector is not None:
            return self.index.search(q, k, params=faiss.SearchParameters(sel=selector))
        return self.index.search(q, k)

    def _search_by_fetch(
        self, q: np.ndarray, k: int, exclude: tuple[int, int] | None, only: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """search() without selectors (GPU indexes): fetch more than k, filter, and grow the
        fetch until every query keeps k or the index is exhausted."""
        S = self.ntotal
        if exclude is None and only is None:
            fetch = k
        elif only is None:
            fetch = k + exclude[1] - exclude[0]
        else:
            fetch = math.ceil(k * S / max(1, len(only)))
        while True:
            fetch = min(fetch, S)
            with self._lock:  # GPU indexes are not safe for concurrent use
                sims, ids = self.index.search(q, fetch)
            keep = ids >= 0
            if exclude is not None:
                keep &= (ids < exclude[0]) | (ids >= exclude[1])
            if only is not None:
                keep &= np.isin(ids, only)
            if fetch >= S or (keep.sum(axis=1) >= k).all():
                break
            fetch *= 4
        out_sims = np.full((len(q), k), -np.inf, np.float32)
        out_ids = np.full((len(q), k), -1, np.int64)
        for i, row in enumerate(keep):
            n = min(k, int(row.sum()))
            out_sims[i, :n], out_ids[i, :n] = sims[i][row][:n], ids[i][row][:n]
        return out_sims, out_ids

    def reconstruct(self, slot_id: int) -> np.ndarray:
        """(D,) float32 stored vector of a slot (exact, also for IVF)."""
        return np.array(self.vectors[int(slot_id)])


def filtered_search(
    searcher: SlotSearcher,
    query: np.ndarray,
    k: int,
    exclude: tuple[int, int] | None,
    only: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k admitted slots nearest to a (D,) unit query, best first: ids (n,) int64 and
    similarities (n,) float32, n <= k. Admitted: the ids in `only` (all when None) except
    [exclude[0], exclude[1]). On an approximate index, a small `only` (at most
    EXACT_FILTER_POOL ids) and a search whose lists hold fewer than k admitted slots are
    answered by an exact search of the admitted slots."""
    if only is not None and searcher.approximate and len(only) <= EXACT_FILTER_POOL:
        return _exact_admitted(searcher.vectors, query, k, exclude, only)
    sims, ids = searcher.search(query[None], k, exclude=exclude, only=only)
    found = ids[0] >= 0
    if found.sum() < k:  # IVF: the lists visited ran out of admitted slots
        return _exact_admitted(searcher.vectors, query, k, exclude, only)
    return ids[0][found], sims[0][found]


def _exact_admitted(
    vectors: np.ndarray,
    query: np.ndarray,
    k: int,
    exclude: tuple[int, int] | None,
    only: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """filtered_search by brute force over the admitted slots (`only`, or all but `exclude`):
    the fallback of an approximate index."""
    if only is not None:
        sims, found = exact_search(vectors[only], query, k)
        return only[found[0]], sims[0]
    excluded = exclude[1] - exclude[0] if exclude is not None else 0
    sims, ids = exact_search(vectors, query, k + excluded)
    keep = (ids[0] < exclude[0]) | (ids[0] >= exclude[1]) if exclude else ids[0] >= 0
    return ids[0][keep][:k], sims[0][keep][:k]
