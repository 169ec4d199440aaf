"""Querying an index: read-only, load once and query many times.

In:  an index directory (indexing.store), optionally the encoder it was built with.
Out: ConceptIndex's answers: prototype statistics, top segments per prototype, the slots most
     similar to a slot or a vector (faiss), an image's slots and assignment map, and for an
     uploaded image its grouping and each segment's neighbours in the collection.

    concept_index  ConceptIndex: the tables mapped into memory, every query
    search         k-nearest-neighbour search over the faiss file, with filters
    upload         the model beside an index: checks, and an upload's rows as the build's

Reads through indexing.store only; never imports build/ or scores/.
"""
