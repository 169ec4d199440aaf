"""Built-in synthetic scenes: scene-centric images with exact ground truth, in COCO layout.

Each of the 12 thing classes is a shape with its own two-tone texture (the class), drawn in random
colours per instance (so colour never identifies a class); each of the 5 stuff classes is a surface
texture filling a horizontal band with a wavy border. An image holds 1-3 stuff bands and 1-6 objects
of varied scale (8-45 % of the side), rotation and position, later objects occluding earlier ones.
Image ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``: deterministic, and
independent of how many worker processes write it.

    python -m model.scenes --out data/scenes --images 2000 --size 192 --seed 0

writes ``DIR/train/000000000001.jpg ...`` and ``DIR/annotations/instances_train.json`` (one RLE
annotation per visible instance and per stuff band, so every pixel is covered exactly once).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from model import scene_textures as tex
from model.outdir import check_output_dir
from model.scene_shapes import SHAPES, UNIT_AREA

GENERATOR_VERSION = 1  # bump when the pictures change, so that cached data sets are rebuilt

# (class name, shape, pattern): the shape and the texture together identify a thing class.
_THINGS = [
    ("dotted disc", "disc", tex.dots),
    ("striped square", "square", tex.stripes),
    ("checkered triangle", "triangle", tex.checker),
    ("ringed star", "star", tex.rings),
    ("zigzag cross", "cross", tex.zigzag),
    ("speckled ring", "ring", tex.speckle),
    ("sunburst hexagon", "hexagon", tex.sunburst),
    ("wavy heart", "heart", tex.waves),
    ("cell crescent", "crescent", tex.cells),
    ("camo diamond", "diamond", tex.camo),
    ("grid ellipse", "ellipse", tex.grid),
    ("scaly L-block", "l_block", tex.scales),
]
# (class name, COCO-stuff supercategory, surface)
_STUFF = [
    ("sky", "sky", tex.sky),
    ("grass", "plant", tex.grass),
    ("brick wall", "wall", tex.brick),
    ("water", "water", tex.water),
    ("sand", "ground", tex.sand),
]
THING_CLASSES: list[str] = [name for name, _, _ in _THINGS]
STUFF_CLASSES: list[str] = [name for name, _, _ in _STUFF]
CATEGORIES: list[dict] = [
    {"id": i + 1, "name": name, "supercategory": "shape", "isthing": 1}
    for i, name in enumerate(THING_CLASSES)
] + [
    {"id": len(THING_CLASSES) + i + 1, "name": name, "supercategory": sup, "isthing": 0}
    for i, (name, sup, _) in enumerate(_STUFF)
]
DESIGN_SIZE = 192  # textures are designed in the pixels of a 192 px scene and scale with the size
MIN_SIZE = 32


def _stuff(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, k: float):
    """1-3 stuff bands, top to bottom (sky, when drawn, on top): image, region map, category ids."""
    size = xs.shape[0]
    count = int(rng.integers(1, 4))
    order = [int(c) for c in rng.permutation(len(_STUFF))[:count]]
    if 0 in order:
        order.remove(0)
        order.insert(0, 0)
    u, v = xs / k, ys / k  # design px
    img = _STUFF[order[0]][2](u, v, k, rng)
    region = np.zeros((size, size), dtype=np.int32)
    bases = np.sort(rng.uniform(0.25, 0.85, count - 1))
    bases[1:] = np.maximum(bases[1:], bases[:-1] + 0.2)
    x = xs[0]
    previous = np.full_like(x, -np.inf)
    for i, base in enumerate(bases):
        border = base * size
        for amp, cycles in ((0.05, rng.uniform(0.5, 2.0)), (0.015, rng.uniform(3.0, 7.0))):
            border = border + amp * size * np.sin(2 * np.pi * (cycles * x / size + rng.random()))
        border = np.maximum(border, previous + 2.0)
        previous = border
        slope = np.gradient(border)
        dist = (ys - border[None, :]) / np.sqrt(1.0 + slope**2)[None, :]  # (H, W) px below border
        layer = _STUFF[order[i + 1]][2](u, v, k, rng)
        alpha = np.clip(0.5 + dist, 0.0, 1.0)[..., None]
        img = img * (1 - alpha) + layer * alpha
        region[dist > 0] = i + 1
    cats = [len(_THINGS) + 1 + c for c in order]
    return img, region, cats


def render_instances(
    rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Draw one scene.

    Returns the image (size x size x 3 uint8 RGB), the instance map (size x size int32, values
    0..n-1: stuff bands first, then objects in drawing order; every pixel belongs to exactly one
    instance, which may be absent where it is fully hidden) and the category id of each instance.
    """
    k = size / DESIGN_SIZE
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres, (H, W)
    img, inst, cats = _stuff(rng, xs, ys, k)
    img = img.astype(np.float32)
    full: dict[int, int] = {}  # object instance -> its in-frame area when placed
    shadow_off, soft = 2.5 * k, 2.5 * k
    min_area = 0.001 * size * size
    for _ in range(int(rng.integers(1, 7))):
        for _attempt in range(12):
            cls = int(rng.integers(len(_THINGS)))
            _, shape, pattern = _THINGS[cls]
            r = (
                rng.uniform(0.09, 0.5) * size / 2
            )  # shapes span about 90 % of 2r: 8-45 % of the side
            cx, cy = rng.uniform(0.04, 0.96, 2) * size
            if _attempt == 11 and not full:
                cx = cy = size / 2  # the first object always finds a place
            theta = rng.uniform(0, 2 * np.pi)
            reach = r * 1.05 + shadow_off + soft + 1
            x0, y0 = max(0, int(cx - reach)), max(0, int(cy - reach))
            x1, y1 = min(size, int(cx + reach) + 1), min(size, int(cy + reach) + 1)
            dx, dy = xs[y0:y1, x0:x1] - cx, ys[y0:y1, x0:x1] - cy
            c, s = np.cos(theta), np.sin(theta)
            sd = SHAPES[shape]((c * dx + s * dy) / r, (c * dy - s * dx) / r) * r  # px
            mask = sd < 0
            area = int(mask.sum())
            if area < max(min_area, 0.55 * UNIT_AREA[shape] * r * r):
                continue  # mostly outside the frame, or tiny
            under = np.bincount(inst[y0:y1, x0:x1][mask], minlength=len(cats))
            visible = np.bincount(inst.ravel(), minlength=len(cats))
            if any(visible[j] - under[j] < max(0.4 * a, min_area) for j, a in full.items()):
                continue  # would hide too much of an earlier object
            break
        else:
            continue
        jitter = rng.uniform(0.9, 1.12)
        m = pattern((c * dx + s * dy) / (k * jitter), (c * dy - s * dx) / (k * jitter), k, rng)
        col_a, col_b = tex.instance_colours(rng)
        rgb = col_a + (col_b - col_a) * m[..., None]
        light = 1.0 + 0.12 * np.clip(-(dx + dy) / (1.4 * r), -1, 1)  # lit from the top left
        rim = 0.7 + 0.3 * np.clip(-sd / (1.6 * k), 0.0, 1.0)  # darker outline
        rgb = rgb * (light * rim)[..., None]
        ssd = SHAPES[shape](
            (c * (dx - shadow_off) + s * (dy - shadow_off)) / r,
            (c * (dy - shadow_off) - s * (dx - shadow_off)) / r,
        )
        shadow = 0.35 * np.clip((soft - ssd * r) / (2 * soft), 0.0, 1.0)
        alpha = np.clip(0.5 - sd, 0.0, 1.0)[..., None]
        patch = img[y0:y1, x0:x1] * (1 - shadow)[..., None]
        img[y0:y1, x0:x1] = patch * (1 - alpha) + rgb * alpha
        inst[y0:y1, x0:x1][mask] = len(cats)
        full[len(cats)] = area
        cats.append(cls + 1)
    image = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return image, inst, cats


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: RGB image (size x size x 3 uint8) and label map (size x size uint8, category id
    of every pixel: 1..12 things, 13..17 stuff, see CATEGORIES)."""
    image, inst, cats = render_instances(rng, size)
    return image, np.asarray(cats, dtype=np.uint8)[inst]


# ---- writing a data set -------------------------------------------------------------------------


def _params(images: int, size: int, seed: int, split: str) -> dict:
    """What determines a data set's content; stored in the JSON's info to recognise it later."""
    return {
        "images": images,
        "size": size,
        "seed": seed,
        "split": split,
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


def _scene_record(job: tuple[str, int, int, int]) -> tuple[dict, list[dict]]:
    """Render image ``image_id``, save its JPEG into ``folder``; its COCO image and annotations."""
    folder, image_id, seed, size = job
    image, inst, cats = render_instances(np.random.default_rng([seed, image_id]), size)
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
    out: Path, images: int, size: int, seed: int, split: str = "train"
) -> Path | None:
    """Path of the instances JSON when ``out`` already holds this exact data set, else None."""
    json_path = Path(out) / "annotations" / f"instances_{split}.json"
    data = _load_ours(json_path) if json_path.is_file() else None
    if data is None or data["info"]["scenes"] != _params(images, size, seed, split):
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


def _check_target(out: Path, split: str) -> None:
    """Refuse to replace anything that is not a scenes data set (e.g. a real COCO folder)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    json_path = out / "annotations" / f"instances_{split}.json"
    if json_path.exists() and _load_ours(json_path) is None:
        raise FileExistsError(f"{json_path} exists and is not a scenes data set; not replacing it")
    folder = out / split
    if folder.is_dir() and not json_path.exists():
        if any(not re.fullmatch(r"\d{12}\.jpg", p.name) for p in folder.iterdir()):
            raise FileExistsError(f"{folder} holds other files; not replacing it")


def write_scenes(
    out: Path, images: int, size: int, seed: int, split: str = "train", workers: int = 2
) -> Path:
    """Write ``images`` scenes of ``size`` x ``size`` px to ``out`` in COCO layout, atomically.

    Images are ``out/<split>/<id:012d>.jpg`` (ids 1..images); returns the path of
    ``out/annotations/instances_<split>.json``. Returns at once when that data set is already
    complete. A new ``out`` is built in a hidden sibling directory and renamed into place; into an
    existing ``out`` (another split) the split is staged inside it and the JSON, the completion
    mark, is moved in last. Raises ValueError on bad arguments, model.outdir.OutputDirError
    when ``out`` holds anything but a scenes data set, and OSError when it cannot be written.
    """
    if images < 1 or size < MIN_SIZE or workers < 1:
        raise ValueError(f"need images >= 1, size >= {MIN_SIZE}, workers >= 1")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", split) or split in (".", "..", "annotations"):
        raise ValueError(f"bad split name {split!r}: use letters, digits, '_', '-', '.'")
    out = Path(out).absolute()
    done = find_complete(out, images, size, seed, split)
    if done is not None:
        return done
    check_output_dir(out, is_scenes_dir, "a scenes data set")
    _check_target(out, split)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out if out.exists() else out.parent
    tmp = staging / f".{out.name}.{split}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # unlike tempfile.mkdtemp, keeps the umask's permissions for the renamed result
    try:
        (tmp / split).mkdir()
        (tmp / "annotations").mkdir()
        coco = {
            "info": {
                "description": "SlotCon Explorer built-in scenes",
                "scenes": _params(images, size, seed, split),
            },
            "licenses": [],
            "images": [],
            "annotations": [],
            "categories": CATEGORIES,
        }
        jobs = [(str(tmp / split), i, seed, size) for i in range(1, images + 1)]
        with multiprocessing.Pool(min(workers, images)) if workers > 1 else _Serial() as pool:
            chunk = max(1, min(16, images // (4 * workers)))
            for record, anns in tqdm(
                pool.imap(_scene_record, jobs, chunk), total=images, desc="scenes", unit="img"
            ):
                coco["images"].append(record)
                for ann in anns:
                    coco["annotations"].append({"id": len(coco["annotations"]) + 1, **ann})
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


class _Serial:
    """Stand-in for multiprocessing.Pool with one worker: runs jobs in this process."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap(self, fn, jobs, chunksize=1):
        return map(fn, jobs)


# ---- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.scenes",
        description="Write the built-in synthetic scenes: JPEG images + COCO instances JSON (RLE).",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory (COCO layout): new, empty or a scenes data set (any other folder "
        "is refused); rerunning with the same parameters is a no-op",
    )
    p.add_argument(
        "--images",
        type=int,
        default=2000,
        help="number of images; 2000 suit a small CPU model, 150-500 an evaluation split",
    )
    p.add_argument(
        "--size",
        type=int,
        default=192,
        help=f"image side in px (>= {MIN_SIZE}); 192 recommended: the textures are designed "
        "at 192 and lose detail below 128",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="data set seed; use a different seed for the evaluation split than for training",
    )
    p.add_argument(
        "--split",
        default="train",
        help="split name: images go to OUT/SPLIT, masks to OUT/annotations/instances_SPLIT.json",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes; one per CPU core (the output does not depend on it)",
    )
    return p


def main(args: argparse.Namespace) -> None:
    parser = build_parser()
    if args.images < 1:
        parser.error("--images must be at least 1")
    if args.size < MIN_SIZE:
        parser.error(f"--size must be at least {MIN_SIZE} px (192 recommended)")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    done = find_complete(args.out, args.images, args.size, args.seed, args.split)
    if done is not None:
        print(f"{args.out}: data set already complete for these parameters ({done}); nothing to do")
        return
    start = time.perf_counter()
    try:
        path = write_scenes(args.out, args.images, args.size, args.seed, args.split, args.workers)
    except (OSError, ValueError) as e:
        parser.error(f"cannot write {args.out}: {e}")
    print(
        f"wrote {args.images} images to {args.out / args.split} and {path} "
        f"in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main(build_parser().parse_args())
