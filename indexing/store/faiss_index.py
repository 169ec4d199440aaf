"""The faiss file of an index: the slot embeddings, exact for small collections, IVF above.

Embeddings are L2-normalised float32, so inner product = cosine similarity; faiss ids are the
slot ids 0..S-1 (vectors are added in slot order). Two index types:
- flat: `IndexFlatIP`, exact. Its cost grows with S x D per query: 1 ms of CPU at 100k slots,
  4 ms at 250k, 17 ms at 1M (D 32, one core of the 2-core machine of docs/BENCHMARKS.md).
- ivf: `IVF{nlist},SQ8,RFlat`: an inverted file of 8-bit scalar-quantised vectors proposes
  k_factor x k candidates from nprobe lists, and the exact stored vectors (the RFlat part)
  re-rank them, so the similarities returned are exact and only recall is approximate.
`auto` picks flat up to FLAT_MAX_SLOTS slots and ivf above. Indexes are read memory-mapped
(faiss IO_FLAG_MMAP_IFC): opening costs no time and the page cache holds what queries touch.
Searching them is indexing.query.search.
"""

from __future__ import annotations

import math
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
