"""faiss over the slot embeddings: exact search for small collections, IVF above.

Embeddings are L2-normalised float32, so inner product = cosine similarity; faiss ids are the
slot ids 0..S-1 (vectors are added in slot order). Two index types:
- flat: `IndexFlatIP`, exact. Its cost grows with S x D per query: 1 ms of CPU at 100k slots,
  4 ms at 250k, 17 ms at 1M (D 32, one core of the 2-core machine of docs/BENCHMARKS.md).
- ivf: `IVF{nlist},SQ8,RFlat`: an inverted file of 8-bit scalar-quantised vectors proposes
  k_factor x k candidates from nprobe lists, and the exact stored vectors (the RFlat part)
  re-rank them, so the similarities returned are exact and only recall is approximate.
`auto` picks flat up to FLAT_MAX_SLOTS slots and ivf above. Indexes are read memory-mapped
(faiss IO_FLAG_MMAP_IFC): opening costs no time and the page cache holds what queries touch.
Searches release the GIL, so several threads may search one index at once (a GPU index is
searched under a lock).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np
from tqdm import tqdm

# faiss skips BLAS below 128000 query x vector products; BLAS is ~7x faster for batches.
faiss.cvar.distance_compute_blas_threshold = 20

INDEX_TYPES = ("auto", "flat", "ivf")
# auto: exact search up to this many slots (4 ms a query at D 32, ~35 ms at D 256 on one core;
# IVF answers 1M slots in about 1 ms). COCO val2017 (~40k slots) stays exact at any D.
FLAT_MAX_SLOTS = 250_000
# Searches smaller than this many query x vector pairs run on one OpenMP thread: waking more
# threads costs more than it saves, and on a busy CPU (a web app's concurrent users) it turned a
# 0.4 ms query over 16k slots into 30 ms (2 cores, docs/BENCHMARKS.md).
SINGLE_THREAD_WORK = 1_000_000
ADD_BLOCK = 1 << 18  # vectors added per faiss call (progress bar steps)


class IvfLayout(NamedTuple):
    factory: str  # faiss index_factory string
    nlist: int  # inverted lists (k-means centroids)
    nprobe: int  # lists visited per query
    k_factor: int  # candidates re-ranked with the exact vectors: k_factor x k


def choose_index_type(num_vectors: int, requested: str = "auto") -> str:
    """The index type, flat or ivf: `requested`, or by size (FLAT_MAX_SLOTS) when "auto"."""
    if requested not in INDEX_TYPES:
        raise ValueError(f"index type must be one of {INDEX_TYPES}, got {requested!r}")
    if requested != "auto":
        return requested
    return "flat" if num_vectors <= FLAT_MAX_SLOTS else "ivf"


def ivf_layout(num_vectors: int) -> IvfLayout:
    """The IVF layout for `num_vectors` vectors.

    nlist: the power of two at most sqrt(N) (k-means and the assignment of every vector to a
    list run on the CPU at build time, so fewer lists than faiss's 4-16 sqrt(N) guideline), with
    at least 39 training points per list. nprobe: nlist / 16 within 16..64: recall is limited
    by the lists visited (a neighbourhood spans several lists when k-means splits a dense
    cluster), hardly by the 8-bit codes; k_factor 4 re-ranks enough of them. Recall@10
    against exact search, per size: docs/BENCHMARKS.md.
    """
    root = math.isqrt(max(num_vectors, 1))
    nlist = max(1, min(1 << (root.bit_length() - 1), num_vectors // 39))
    nprobe = min(nlist, max(16, min(64, nlist // 16)))
    return IvfLayout(f"IVF{nlist},SQ8,RFlat", nlist, nprobe, 4)


def build_faiss(
    embeddings: np.ndarray, index_type: str = "auto", seed: int = 0, progress: bool = False
) -> tuple[faiss.Index, dict]:
    """A CPU faiss index of embeddings (S, D) float32 (L2-normalised); faiss id = row = slot id.

    index_type: auto | flat | ivf (see the module docstring); ivf is trained on a seeded sample
    of at most 64 x nlist vectors. Returns (index, description for the manifest: type, factory,
    nprobe, k_factor, metric, vectors, dim).
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    N, D = x.shape
    kind = choose_index_type(N, index_type)
    if kind == "ivf" and N < 39:  # too few points to train even one list
        kind = "flat"
    layout = None
    if kind == "flat":
        index = faiss.IndexFlatIP(D)
        factory = "Flat"
    else:
        layout = ivf_layout(N)
        factory = layout.factory
        index = faiss.index_factory(D, factory, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(N, size=min(N, 64 * layout.nlist), replace=False))
        index.train(x[sample])
    blocks = range(0, N, ADD_BLOCK)
    for start in tqdm(blocks, desc="faiss add", unit="block", disable=not progress):
        index.add(x[start : start + ADD_BLOCK])
    info = {
        "type": kind,
        "factory": factory,
        "nprobe": layout.nprobe if layout else None,
        "k_factor": layout.k_factor if layout else None,
        "metric": "inner_product",
        "vectors": int(N),
        "dim": int(D),
    }
    return index, info


def save_faiss(index: faiss.Index, path: str | Path) -> None:
    faiss.write_index(index, str(path))


def load_faiss(path: str | Path) -> faiss.Index:
    """Read an index written by save_faiss, memory-mapped (its vectors and lists stay on disk
    until searched; the file must not change while the index is open). faiss before 1.11 has
    no such flag and reads the whole file."""
    return faiss.read_index(str(path), getattr(faiss, "IO_FLAG_MMAP_IFC", 0))


def stored_vectors(index: faiss.Index) -> np.ndarray:
    """(S, D) float32 read-only view of the exact vectors of a flat or IVF-RFlat index (no copy;
    the view keeps the index alive)."""
    owner = faiss.downcast_index(index)
    flat = faiss.downcast_index(owner.refine_index) if hasattr(owner, "refine_index") else owner
    if not isinstance(flat, faiss.IndexFlat):
        raise ValueError(f"{type(owner).__name__}: no exact vectors stored (rebuild the index)")
    S, D = int(flat.ntotal), int(flat.d)
    if S == 0:
        return np.zeros((0, D), np.float32)
    raw = faiss.rev_swig_ptr(flat.get_xb(), S * D).reshape(S, D)
    return np.asarray(_KeepAlive(raw, index))


class _KeepAlive:
    """An array interface over faiss memory that holds the faiss index: the numpy view made
    from it (its base) cannot outlive the memory it points into."""

    def __init__(self, raw: np.ndarray, index: faiss.Index):
        self.index = index
        interface = dict(raw.__array_interface__)
        interface["data"] = (interface["data"][0], True)  # read-only
        self.__array_interface__ = interface


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
