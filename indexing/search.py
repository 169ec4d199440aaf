"""faiss over the slot embeddings: exact inner product by default, IVF(-PQ) for millions.

Embeddings are L2-normalised float32, so inner product = cosine similarity; faiss ids are the
slot ids. Searches release the GIL, so several threads may search one index at once (a GPU
index is searched under a lock).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import faiss
import numpy as np

# faiss skips BLAS below 128000 query x vector products; BLAS is ~7x faster for batches.
faiss.cvar.distance_compute_blas_threshold = 20

INDEX_TYPES = ("flat", "ivf")
# Searches smaller than this many query x vector pairs run on one OpenMP thread: waking more
# threads costs more than it saves, and on a busy CPU (a web app's concurrent users) it turned a
# 0.4 ms query over 16k slots into 30 ms (2 cores, docs/BENCHMARKS.md).
SINGLE_THREAD_WORK = 1_000_000


def gpu_available() -> bool:
    """True with a faiss build that has GPU support and at least one visible GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def ivf_layout(num_vectors: int, dim: int) -> tuple[str, int]:
    """(faiss factory string, nprobe) for an IVF index of `num_vectors` vectors of size `dim`.

    nlist ~ 4 sqrt(N) (at least 39 training points per list); PQ with 8-dim sub-vectors
    (8 bits each) when D allows it and there are enough points to train 256 codes per
    sub-quantizer, else flat lists. nprobe = nlist / 16, between 1 and 64.
    """
    nlist = max(1, min(int(4 * math.sqrt(num_vectors)), num_vectors // 39))
    nprobe = max(1, min(64, nlist // 16, nlist))
    m = dim // 8
    if dim % 8 == 0 and m >= 2 and num_vectors >= 256 * 39:
        return f"IVF{nlist},PQ{m}np", nprobe  # np: no polysemous training (unused, slow)
    return f"IVF{nlist},Flat", nprobe


def build_faiss(
    embeddings: np.ndarray, ids: np.ndarray, index_type: str = "flat", seed: int = 0
) -> tuple[faiss.Index, dict]:
    """A CPU faiss index of embeddings (N, D) float32 (L2-normalised) keyed by ids (N,) int64.

    flat: `IDMap2,Flat` exact inner product. ivf: IVF (with PQ when D allows), trained on a
    sample of at most 256 x nlist vectors (seeded). Returns (index, description for the
    manifest: type, factory, nprobe, metric).
    """
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index type must be one of {INDEX_TYPES}, got {index_type!r}")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    N, D = x.shape
    nprobe = None
    if index_type == "flat" or N < 39:
        factory = "IDMap2,Flat"
        index = faiss.index_factory(D, factory, faiss.METRIC_INNER_PRODUCT)
    else:
        factory, nprobe = ivf_layout(N, D)
        index = faiss.index_factory(D, factory, faiss.METRIC_INNER_PRODUCT)
        nlist = faiss.extract_index_ivf(index).nlist
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(N, size=min(N, 256 * nlist), replace=False))]
        index.train(sample)
        faiss.extract_index_ivf(index).nprobe = nprobe
    if N:
        index.add_with_ids(x, ids)
    info = {
        "type": "flat" if factory.startswith("IDMap2") else "ivf",
        "factory": factory,
        "nprobe": nprobe,
        "metric": "inner_product",
        "vectors": int(N),
        "dim": int(D),
    }
    return index, info


def save_faiss(index: faiss.Index, path: str | Path) -> None:
    faiss.write_index(index, str(path))


def load_faiss(path: str | Path, nprobe: int | None = None) -> faiss.Index:
    """Read an index written by save_faiss (CPU); IVF indexes get `nprobe` and a direct map
    (so that a slot's vector can be reconstructed from its id)."""
    index = faiss.read_index(str(path))
    if nprobe is not None:
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = nprobe
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


class SlotSearcher:
    """Thread-safe k-nearest-neighbour search over one faiss index (CPU, or GPU when asked)."""

    def __init__(self, index: faiss.Index, gpu: bool | None = None):
        """gpu: None = use a GPU when faiss has one; False = CPU; True = GPU or error."""
        self.cpu_index = index  # kept for reconstruct(), which GPU indexes lack
        self.index = index
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

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, D) -> similarities (Q, k) float32 and ids (Q, k) int64 (-1: none),
        best first; k is capped at the number of vectors."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.ntotal))
        if self.ntotal == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if self.on_gpu:
            with self._lock:  # GPU indexes are not safe for concurrent use
                return self.index.search(q, k)
        # per calling thread: each request thread chooses its own OpenMP team size
        faiss.omp_set_num_threads(1 if len(q) * self.ntotal < SINGLE_THREAD_WORK else self._threads)
        return self.index.search(q, k)

    def reconstruct(self, slot_id: int) -> np.ndarray:
        """(D,) float32 stored vector of a slot (decoded approximation for PQ)."""
        return self.cpu_index.reconstruct(int(slot_id))
