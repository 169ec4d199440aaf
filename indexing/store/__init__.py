"""The stored index: what an index directory holds and how one image becomes its rows.

In:  an encoder's output for an image (dots K x h x w, slots K x D) and its preprocessing.
Out: the files of one index directory (manifest, Arrow tables, faiss file, packed assignment
     maps, the user's prototype names beside it) and the readers that map them back.

    schema       the rows and tables an index holds, the manifest's fields and check
    directory    the directory's file names, reading the manifest, table files, atomic writes
    assignments  (H, W) prototype maps as PNGs packed into shard files
    faiss_index  the faiss file of slot embeddings (flat or IVF): build, save, load
    labels       the user's prototype names, beside the directory
    views        fixed resize + centre-crop views, and where a crop lies in the image
    rows         encoder output -> one image's slot rows (the build's and an upload's alike)

The bottom of indexing/: it imports nothing from build/, scores/, query/ or compare/; they all
read and write an index through it.
"""
