"""The image collection of an index: its file list and its image ids.

Paths are relative to the image root, POSIX-style, in sorted order (model.data.list_images).
Image ids come from a COCO JSON whose file_names match the files (indexing.scores.annotations
matches them: by relative path, else by unique file name); files the JSON does not list get ids
after its largest id. Without a matching JSON the ids are 1..N in path order.
"""

from __future__ import annotations

from pathlib import Path

from model.data import list_images


def list_collection(root: str | Path, exclude: tuple[Path, ...] = ()) -> list[str]:
    """Relative POSIX paths of all images under `root` (recursive, sorted), leaving out those
    under the `exclude` folders (an index being written inside the image folder).

    FileNotFoundError for a missing folder or one without images."""
    root = Path(root)
    exclude = tuple(Path(e).absolute() for e in exclude)
    paths = [
        p.relative_to(root).as_posix()
        for p in list_images(root)
        if not any(p.absolute().is_relative_to(e) for e in exclude)
    ]
    if not paths:
        raise FileNotFoundError(f"no images (.jpg, .jpeg, .png, .webp, .bmp) under {root}")
    return paths


def assign_image_ids(paths: list[str], annotation_ids: list[int | None] | None) -> list[int]:
    """Image ids for the paths: the annotation id where there is one; the others (all of them
    without annotations, or when none matched) numbered after the largest id, in path order."""
    if annotation_ids is None or all(i is None for i in annotation_ids):
        return list(range(1, len(paths) + 1))
    if len({i for i in annotation_ids if i is not None}) != sum(
        i is not None for i in annotation_ids
    ):
        raise ValueError("two image files match the same annotation image id")
    next_id = max(i for i in annotation_ids if i is not None) + 1
    ids = []
    for image_id in annotation_ids:
        if image_id is None:
            image_id, next_id = next_id, next_id + 1
        ids.append(int(image_id))
    return ids
