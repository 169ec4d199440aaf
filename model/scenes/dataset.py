"""Writing the built-in scenes as a data set in COCO layout, atomically and in parallel.

``write_scenes`` writes ``DIR/<split>/000000000001.jpg ...`` and
``DIR/annotations/instances_<split>.json`` (one RLE annotation per visible instance and per stuff
band, so every pixel is covered exactly once); the JSON's info records the parameters, so that a
complete data set is recognised and reused. A folder holds one style and generator version: a
split of another style or version is rebuilt, and writing a split beside splits of another style
or version is refused (a mixed cache would train on one data set and score on another).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import secrets
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from model.outdir import check_output_dir
from model.scenes.render import (
    CATEGORIES,
    DEFAULT_STYLE,
    GENERATOR_VERSION,
    MIN_SIZE,
    STYLES,
    render_instances,
)


def _params(images: int, size: int, seed: int, split: str, style: str) -> dict:
    """What determines a data set's content; stored in the JSON's info to recognise it later."""
    return {
        "images": images,
        "size": size,
        "seed": seed,
        "split": split,
        "style": style,
        "version": GENERATOR_VERSION,
    }


def _annotate(image_id: int, inst: np.ndarray, cats: list[int]) -> list[dict]:
    """One COCO annotation (without id) per visible instance; RLE counts as str."""
    anns = []
    for j, cat in enumerate(cats):
        mask = inst == j
        area = int(mask.sum())
        if area == 0:
            continue  # fully hidden
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        anns.append(
            {
                "image_id": image_id,
                "category_id": cat,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": area,
                "bbox": [float(b) for b in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            }
        )
    return anns


def _scene_record(job: tuple[str, int, int, int, str]) -> tuple[dict, list[dict]]:
    """Render image ``image_id``, save its JPEG into ``folder``; its COCO image and annotations."""
    folder, image_id, seed, size, style = job
    image, inst, cats = render_instances(np.random.default_rng([seed, image_id]), size, style)
    name = f"{image_id:012d}.jpg"
    # 4:4:4 chroma keeps the thin two-tone pattern edges crisp
    Image.fromarray(image).save(os.path.join(folder, name), quality=92, subsampling=0)
    record = {"id": image_id, "file_name": name, "width": size, "height": size}
    return record, _annotate(image_id, inst, cats)


def _load_ours(json_path: Path) -> dict | None:
    """The instances JSON if it is a scenes data set written by this module, else None."""
    try:
        data = json.loads(json_path.read_text())
        return data if isinstance(data.get("info", {}).get("scenes"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def find_complete(
    out: Path,
    images: int,
    size: int,
    seed: int,
    split: str = "train",
    style: str = DEFAULT_STYLE,
) -> Path | None:
    """Path of the instances JSON when ``out`` already holds this exact data set, else None."""
    json_path = Path(out) / "annotations" / f"instances_{split}.json"
    data = _load_ours(json_path) if json_path.is_file() else None
    if data is None or data["info"]["scenes"] != _params(images, size, seed, split, style):
        return None
    folder = Path(out) / split
    if not all((folder / im["file_name"]).is_file() for im in data["images"]):
        return None
    return json_path


def is_scenes_dir(out: Path) -> bool:
    """True when ``out`` is a data set of this module: an instances JSON of ours in its
    annotations, or (a first write killed before its rename) only its staging directories."""
    out = Path(out)
    if any(_load_ours(p) is not None for p in out.glob("annotations/instances_*.json")):
        return True
    staging = re.compile(re.escape(f".{out.name}.") + r".+\.tmp-\d+-[0-9a-f]+")
    return all(staging.fullmatch(p.name) and p.is_dir() for p in out.iterdir())


def _check_target(out: Path, split: str, style: str) -> None:
    """Refuse to replace anything that is not a scenes data set (e.g. a real COCO folder), and to
    write a split beside splits of another style or generator version."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    for other in sorted(out.glob("annotations/instances_*.json")):
        params = (_load_ours(other) or {}).get("info", {}).get("scenes")
        if other.name == f"instances_{split}.json" or params is None:
            continue
        found = params.get("style", "hard"), params.get("version")  # version 1 had no style
        if found != (style, GENERATOR_VERSION):
            raise FileExistsError(
                f"{out} holds {found[0]} scenes of generator version {found[1]} (split "
                f"{params.get('split')}); a folder holds one style and version: write {style} "
                f"scenes of version {GENERATOR_VERSION} to another --out"
            )
    json_path = out / "annotations" / f"instances_{split}.json"
    if json_path.exists() and _load_ours(json_path) is None:
        raise FileExistsError(f"{json_path} exists and is not a scenes data set; not replacing it")
    folder = out / split
    if folder.is_dir() and not json_path.exists():
        if any(not re.fullmatch(r"\d{12}\.jpg", p.name) for p in folder.iterdir()):
            raise FileExistsError(f"{folder} holds other files; not replacing it")


def write_scenes(
    out: Path,
    images: int,
    size: int,
    seed: int,
    split: str = "train",
    workers: int = 2,
    style: str = DEFAULT_STYLE,
) -> Path:
    """Write ``images`` scenes of ``size`` x ``size`` px and ``style`` (a key of
    model.scenes.STYLES) to ``out`` in COCO layout, atomically.

    Images are ``out/<split>/<id:012d>.jpg`` (ids 1..images); returns the path of
    ``out/annotations/instances_<split>.json``. Returns at once when that data set is already
    complete. A new ``out`` is built in a hidden sibling directory and renamed into place; into an
    existing ``out`` (another split) the split is staged inside it and the JSON, the completion
    mark, is moved in last. Raises ValueError on bad arguments, model.outdir.OutputDirError
    when ``out`` holds anything but a scenes data set, and OSError when it cannot be written.
    """
    if images < 1 or size < MIN_SIZE or workers < 1:
        raise ValueError(f"need images >= 1, size >= {MIN_SIZE}, workers >= 1")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}: use one of {', '.join(STYLES)}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", split) or split in (".", "..", "annotations"):
        raise ValueError(f"bad split name {split!r}: use letters, digits, '_', '-', '.'")
    out = Path(out).absolute()
    done = find_complete(out, images, size, seed, split, style)
    if done is not None:
        return done
    check_output_dir(out, is_scenes_dir, "a scenes data set")
    _check_target(out, split, style)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out if out.exists() else out.parent
    tmp = staging / f".{out.name}.{split}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # unlike tempfile.mkdtemp, keeps the umask's permissions for the renamed result
    try:
        (tmp / split).mkdir()
        (tmp / "annotations").mkdir()
        coco = _render_split(tmp / split, _params(images, size, seed, split, style), workers)
        tmp_json = tmp / "annotations" / f"instances_{split}.json"
        tmp_json.write_text(json.dumps(coco, separators=(",", ":")))
        json_path = out / "annotations" / f"instances_{split}.json"
        if not out.exists():
            os.rename(tmp, out)
            return json_path
        json_path.unlink(missing_ok=True)  # the data set is incomplete from here until the end
        if (out / split).exists():
            os.rename(out / split, tmp / "replaced")
        os.rename(tmp / split, out / split)
        (out / "annotations").mkdir(exist_ok=True)
        os.replace(tmp_json, json_path)
        return json_path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _render_split(folder: Path, params: dict, workers: int) -> dict:
    """Render images 1..images of `params` (see _params) into `folder` (JPEGs) with `workers`
    processes; the COCO instances dict of the split (annotation ids in image order, whatever
    the workers)."""
    images = params["images"]
    coco = {
        "info": {"description": "SlotCon Explorer built-in scenes", "scenes": params},
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": CATEGORIES,
    }
    job = (params["seed"], params["size"], params["style"])
    jobs = [(str(folder), i, *job) for i in range(1, images + 1)]
    with multiprocessing.Pool(min(workers, images)) if workers > 1 else _Serial() as pool:
        chunk = max(1, min(16, images // (4 * workers)))
        for record, anns in tqdm(
            pool.imap(_scene_record, jobs, chunk), total=images, desc="scenes", unit="img"
        ):
            coco["images"].append(record)
            for ann in anns:
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, **ann})
    return coco


class _Serial:
    """Stand-in for multiprocessing.Pool with one worker: runs jobs in this process."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap(self, fn, jobs, chunksize=1):
        return map(fn, jobs)
