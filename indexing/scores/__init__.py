"""Scoring: prototype maps against ground truth, as unsupervised semantic segmentation.

In:  (K, L) pixel counts of (prototype, class), or an index and an encoder for the COCO-Stuff-27
     protocol; annotations as COCO JSON or COCO-Stuff label PNGs.
Out: mIoU and pixel accuracy under Hungarian matching and majority vote, per-class IoU,
     dominant class and purity per prototype; tables and JSON for the command line.

    cocostuff    COCO-Stuff's class tables: 182 fine ids -> 27 coarse classes
    groundtruth  label maps from COCO JSON (pycocotools) and COCO-Stuff PNGs
    annotations  load a collection's annotations, match them to its files, mask a label map
    metrics      confusion counts -> Hungarian and majority-vote scores, purity
    picie        PiCIE's baseline: k-means of pixel features, matched to the classes
    protocol     the COCO-Stuff-27 protocol of the paper's table (docs/COCOSTUFF27.md)
    evaluate     an index's stored maps scored; result tables and CSV

Reads through indexing.store (views, the stored maps); never imports build/ or query/ (the
functions that score an index take it as an argument).
"""
