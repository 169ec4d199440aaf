"""Indexing: extraction over a collection, the on-disk index (tables + faiss), queries, scores.

    from indexing import ConceptIndex
    index = ConceptIndex.open("data/index-demo")
    index.top_segments(prototype=3, k=10)

The public names are imported lazily, so that `python -m indexing --help` answers at once.
"""

from importlib import import_module

_EXPORTS = {
    "ConceptIndex": "indexing.concept_index",
    "ImageRecord": "indexing.concept_index",
    "IndexMismatchError": "indexing.concept_index",
    "QueryResult": "indexing.concept_index",
    "IndexFormatError": "indexing.store",
    "BuildConfig": "indexing.config",
    "build_index": "indexing.build",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'indexing' has no attribute {name!r}")
