"""COCO val2017 in one command (`python -m indexing coco`, `make coco`).

In:  CocoConfig (a root folder, a checkpoint file or URL, an optional mirror, build sizes).
Out: <root>/val2017, <root>/annotations/instances_val2017.json, <root>/stuffthingmaps/val2017
     (downloaded, verified, unpacked atomically) and their index directory (indexing.build).

    sources   the table of official URLs, sizes and checksums, and where they come from
    download  resumable HTTP with a progress bar
    archives  verification and atomic unpacking
    setup     the data and the model
    estimate  the build's expected time
    index     the build (skipped when up to date)
    command   `python -m indexing coco`

A command that drives the others: coco/ -> build/ (BuildConfig, run_build), coco/ -> store/
(the manifest of an index already built); no stage imports it. Nothing here touches the network
at import time.
"""
