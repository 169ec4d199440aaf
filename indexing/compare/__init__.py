"""Comparing two indexes of the same images (two checkpoints, e.g. two epochs of one run).

In:  two ConceptIndex (indexing.query) over the same image files; K may differ.
Out: the (K_A, K_B) pixel counts shared by each pair of prototypes over the whole collection,
     IoU, a one-to-one Hungarian matching, each prototype's best partner, the groupings'
     agreement; written as parquet + JSON by `python -m indexing compare`.

    correspondence  the counts, matchings and summaries, and their files
    cli             `python -m indexing compare`
"""
