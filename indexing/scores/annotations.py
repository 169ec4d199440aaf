"""A collection's annotations: loaded as label maps (CocoLabels), matched to the collection's
image files, and masked to the pixels a view counts.

Label maps are (H, W) uint8 class indices, IGNORE_INDEX (255) unlabelled
(indexing.scores.groundtruth).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np

from indexing.scores.cocostuff import IGNORE_INDEX
from indexing.scores.groundtruth import CocoLabels


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


def outside_ignored(labels: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of (H, W) labels with the pixels outside region (x0, y0, x1, y1) unlabelled."""
    x0, y0, x1, y1 = region
    out = np.full_like(labels, IGNORE_INDEX)
    out[y0:y1, x0:x1] = labels[y0:y1, x0:x1]
    return out
