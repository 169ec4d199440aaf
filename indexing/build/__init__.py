"""Building an index: a folder of images and a checkpoint -> an index directory.

In:  BuildConfig (images folder, checkpoint, optional COCO-format annotations, sizes, workers).
Out: an index directory written atomically (indexing.store), with its build-time scores when
     annotations are given.

    config      BuildConfig: what `python -m indexing build` does (one field per flag)
    collection  the image files of the collection and their image ids
    extract     workers decode and preprocess; the encoder turns batches into slot rows
    batching    images regrouped into batches of one padded shape
    partial     chunks of extracted rows in <out>.partial/ (resume, several processes)
    tables      the merged rows -> the images, slots and prototypes tables
    writer      the tables, faiss file and maps -> the index directory, atomically
    pipeline    build_index: the steps above, on one process or under torchrun
    cli         `python -m indexing build`

Writes through indexing.store; scores the collection while it extracts it, in the same pass,
with indexing.scores (annotations, confusion counts, scores): build/ -> store/, build/ -> scores/.
"""
