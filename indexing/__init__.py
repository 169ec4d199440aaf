"""Indexing: extraction over a collection, the on-disk index (tables + faiss), queries, scores.

    from indexing import ConceptIndex
    index = ConceptIndex.open("data/index-demo")
    index.top_segments(prototype=3, k=10)

One subpackage per stage, in the order the data flows:

    build/    images + checkpoint -> an index directory          (python -m indexing build)
    store/    the index directory: its files, and one image's rows
    query/    an index directory -> ConceptIndex's answers         (the app, the figure)
    scores/   prototype maps + ground truth -> segmentation scores (python -m indexing evaluate)
    compare/  two indexes of the same images -> their correspondence (python -m indexing compare)
    coco/     COCO val2017's downloads -> build/'s index             (python -m indexing coco)

Arrows point down to store/ only (build/, scores/, query/ -> store/; compare/ -> query/,
store/), with one more: build/ -> scores/, because a build scores the collection in the same
pass that extracts it. coco/ is a command that drives build/ (and reads store/); no stage
imports it. At the root: the command line (cli.py, one entry per command),
`python -m indexing evaluate` (evaluate_cli.py: opens an index and scores it; the
stuffthingmaps coco/ unpacked beside the index's images are its cocostuff27 default) and the paper's
Figure 3 (figure.py, drawn from a ConceptIndex; figure_cli.py, its command).

The public names are imported lazily, so that `python -m indexing --help` answers at once.
"""

from importlib import import_module

_EXPORTS = {
    "ConceptIndex": "indexing.query.concept_index",
    "ImageRecord": "indexing.query.concept_index",
    "IndexMismatchError": "indexing.query.concept_index",
    "QueryResult": "indexing.query.concept_index",
    "IndexFormatError": "indexing.store.directory",
    "BuildConfig": "indexing.build.config",
    "build_index": "indexing.build.pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'indexing' has no attribute {name!r}")
