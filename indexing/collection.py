"""The image collection of an index: file list, image ids, and their match to annotations.

Paths are relative to the image root, POSIX-style, in sorted order (model.data.list_images).
Image ids come from a COCO JSON whose file_names match the files (by relative path, else by
unique file name); files the JSON does not list get ids after its largest id. Without a
matching JSON the ids are 1..N in path order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath

from indexing.groundtruth import CocoLabels
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


def match_annotations(paths: list[str], labels: CocoLabels) -> list[int | None]:
    """The annotation image id of each relative path, None where the JSON lists no such file.

    A JSON file_name matches a path when it is equal to it, or else when both have the same
    file name and that file name occurs once in the JSON (e.g. COCO's "000000000139.jpg"
    against "val2017/000000000139.jpg").
    """
    by_name: dict[str, int] = {}
    for image_id in labels.image_ids:
        by_name[PurePosixPath(labels.image_info(image_id).file_name).as_posix()] = image_id
    base_counts = Counter(PurePosixPath(name).name for name in by_name)
    by_base = {
        PurePosixPath(n).name: i
        for n, i in by_name.items()
        if base_counts[PurePosixPath(n).name] == 1
    }
    matched: list[int | None] = []
    for path in paths:
        image_id = by_name.get(path)
        if image_id is None:
            image_id = by_base.get(PurePosixPath(path).name)
        matched.append(image_id)
    return matched


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


def load_labels(annotations: list[Path] | tuple[Path, ...], coarse: bool = False) -> CocoLabels:
    """CocoLabels of one instances JSON and optionally a COCO-Stuff stuff JSON.

    Raises FileNotFoundError / ValueError with the file named."""
    if not 1 <= len(annotations) <= 2:
        raise ValueError(
            "give one or two annotation files (instances JSON [stuff JSON]), "
            f"got {len(annotations)}"
        )
    for path in annotations:
        if not Path(path).is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        return CocoLabels(annotations[0], annotations[1] if len(annotations) > 1 else None, coarse)
    except (KeyError, TypeError, AttributeError) as error:  # a JSON of another layout
        raise ValueError(
            f"{annotations[0]}: not a COCO-format annotation file ({error})"
        ) from error
    except ValueError as error:
        raise ValueError(f"{annotations[0]}: {error}") from error
