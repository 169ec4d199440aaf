"""Shared fixtures."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# --- files an upload meets, real photos --------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_upload_samples(folder: Path) -> dict[str, Path]:
    """Files an upload form meets in the wild. Keys: good (a plain JPEG), cmyk, png16, exif
    (stored 80 x 40 with EXIF orientation 6, i.e. 40 x 80 upright), palette_alpha; bad:
    not_image, truncated, one_pixel, huge_header (a PNG whose header claims 30000 x 30000),
    empty, thin (4000 x 16: only 4 pixels high once reduced to the working size)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = {}

    def path(name: str) -> Path:
        paths[name.split(".")[0]] = folder / name
        return folder / name

    scene = np.zeros((96, 128, 3), np.uint8)
    scene[:, :64] = (200, 40, 40)
    scene[:, 64:] = (40, 40, 200)
    scene[30:70, 40:90] = (250, 250, 60)
    Image.fromarray(scene).save(path("good.jpg"), quality=95)
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(path("cmyk.jpg"))
    ramp = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    Image.fromarray(ramp).save(path("png16.png"))  # mode I;16
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rng.integers(0, 255, (40, 80, 3), dtype=np.uint8)).save(
        path("exif.jpg"), exif=exif
    )
    palette = Image.new("P", (48, 48))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.info["transparency"] = 0
    palette.save(path("palette_alpha.png"))

    path("not_image.jpg").write_bytes(b"this is a text file pretending to be a JPEG\n" * 20)
    full = folder / "full.jpg"
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(full, quality=90)
    data = full.read_bytes()
    path("truncated.jpg").write_bytes(data[: len(data) // 2])
    full.unlink()
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path("one_pixel.png"))
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)  # 8-bit RGB
    body = zlib.compress(b"\x00" + b"\x00" * 3 * 30000)  # one row; the rest is missing
    path("huge_header.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )
    path("empty.png").write_bytes(b"")
    Image.new("RGB", (4000, 16), (90, 120, 30)).save(path("thin.png"))
    return paths


@pytest.fixture(scope="session")
def upload_samples(tmp_path_factory) -> dict[str, Path]:
    return write_upload_samples(tmp_path_factory.mktemp("uploads"))


# Real photographs of mixed sizes and modes, as scikit-image's wheel ships them (no download):
# name -> (W, H, mode) of the file.
PHOTOS = {
    "astronaut.png": (512, 512, "RGB"),
    "camera.png": (512, 512, "L"),
    "chelsea.png": (451, 300, "RGB"),
    "coffee.png": (600, 400, "RGB"),
    "coins.png": (384, 303, "L"),
    "hubble_deep_field.jpg": (1000, 872, "RGB"),
    "motorcycle_left.png": (741, 500, "RGB"),
    "rocket.jpg": (640, 427, "RGB"),
}


def copy_photos(folder: Path, names=tuple(PHOTOS)) -> list[Path]:
    """Copy photos bundled in scikit-image's wheel (skimage/data, read as files: never its
    fetchers, which may download) into `folder`; returns the copies' paths."""
    import shutil

    import skimage.data

    source = Path(skimage.data.__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source / name, folder / name)) for name in names]


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> list[Path]:
    """A folder's worth of real photos (see PHOTOS), read-only for the tests."""
    return copy_photos(tmp_path_factory.mktemp("photos"))


# --- scene indexes: randomly initialised tiny encoders, scenes and their index, built in-process


def save_random_encoder(
    path: Path, seed: int, images: list[Path] = (), num_prototypes: int = 8
) -> Path:
    """A tiny SlotCon encoder (the `tiny` preset's shape: K = 8 unless `num_prototypes` says
    otherwise, D = 16) at random weights, seeded by `seed`.

    With `images`, the prototypes are set to K far-apart pixel features of those images
    (farthest-point sampling), so that every prototype wins some pixels, as after training."""
    import dataclasses

    import torch
    import torch.nn.functional as F

    from model.checkpoint import encoder_checkpoint, save_atomic
    from model.config import TINY
    from model.data import load_rgb
    from model.encoder import SlotConEncoder

    cfg = dataclasses.replace(TINY.model, num_prototypes=num_prototypes)
    torch.manual_seed(seed)
    encoder = SlotConEncoder(cfg)
    if images:
        with torch.inference_mode():
            features = []
            for image in images:
                x, _ = encoder.preprocess(load_rgb(image), 64)
                z = encoder.projector(encoder.backbone(x))  # (1, D, h, w)
                features.append(F.normalize(z.flatten(2)[0].T, dim=1))  # (h * w, D)
            z = torch.cat(features)
            chosen = [int(torch.randint(len(z), (1,)))]
            for _ in range(1, encoder.num_prototypes):
                nearest = (z @ z[chosen].T).max(dim=1).values  # cosine to the closest chosen
                chosen.append(int(nearest.argmin()))
            prototypes = z[chosen].clone()
        encoder.grouping.slot_embed.weight.data.copy_(prototypes)
    save_atomic(encoder_checkpoint(cfg, encoder.state_dict(), seed=seed), path)
    return path


def prototype_sample(images: Path) -> list[Path]:
    """The first 8 scenes of a folder: the images whose pixel features place a random encoder's
    prototypes (save_random_encoder)."""
    return sorted(images.glob("*.jpg"))[:8]


def build_scene_index(
    root: Path,
    images: int,
    image_size: int,
    scene_seed: int,
    encoder_seed: int,
    **build: object,
) -> dict:
    """Synthetic scenes, a random tiny encoder and the scenes' index, built in this process
    under `root`: `images` scenes of `image_size` px (split val, seed `scene_seed`, with
    annotations), the encoder of save_random_encoder(seed=`encoder_seed`) with prototypes
    spread over the first scenes' features, and build_index on the CPU without worker processes;
    `build` sets any other BuildConfig field (size, batch_size, chunk_size, ...).

    Keys: scenes, images (the scenes' image folder), annotations, checkpoint, index, config
    (the BuildConfig used)."""
    from indexing import build_index
    from indexing.build.config import BuildConfig
    from model.scenes import write_scenes

    scenes = root / "scenes"
    annotations = write_scenes(
        scenes, images=images, size=image_size, seed=scene_seed, split="val", workers=1
    )
    checkpoint = save_random_encoder(
        root / "encoder.pt", seed=encoder_seed, images=prototype_sample(scenes / "val")
    )
    config = BuildConfig(
        checkpoint=checkpoint,
        images=scenes / "val",
        out=root / "index",
        annotations=(annotations,),
        device="cpu",
        workers=0,
        **build,
    )
    with warnings.catch_warnings():  # pycocotools' mask decoding under numpy 2
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        build_index(config)
    return {
        "scenes": scenes,
        "images": config.images,
        "annotations": annotations,
        "checkpoint": checkpoint,
        "index": config.out,
        "config": config,
    }


@pytest.fixture(scope="session")
def explorer_data(tmp_path_factory) -> dict[str, Path]:
    """Built once per session, in this process: 60 synthetic scenes of 192 px with annotations,
    a tiny SlotCon (K = 8, seed 2; see save_random_encoder) and the index of the scenes
    (the build's defaults). Keys: scenes, images, annotations, checkpoint, index."""
    data = build_scene_index(
        tmp_path_factory.mktemp("explorer"),
        images=60,
        image_size=192,
        scene_seed=5,
        encoder_seed=2,
    )
    return {key: data[key] for key in ("scenes", "images", "annotations", "checkpoint", "index")}


@pytest.fixture(scope="session")
def indexing_data(tmp_path_factory) -> dict:
    """Built once per session, in this process: 32 scenes of 64 px with annotations, two random
    tiny encoders (seeds 0 and 1) and the index of the scenes made with the first. Keys: images,
    annotations, checkpoint, other_checkpoint, index, config (the indexing.BuildConfig used:
    size 64, batches of 4, chunks of 8 images, no worker processes)."""
    root = tmp_path_factory.mktemp("indexing")
    data = build_scene_index(
        root,
        images=32,
        image_size=64,
        scene_seed=3,
        encoder_seed=0,
        size=64,
        batch_size=4,
        chunk_size=8,
    )
    other = save_random_encoder(root / "other.pt", seed=1, images=prototype_sample(data["images"]))
    return {
        **{key: data[key] for key in ("images", "annotations", "checkpoint", "index", "config")},
        "other_checkpoint": other,
    }


# --- the app: a browser, HTTP helpers, the shared context and the launched app -----------------

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser of its own
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (skips when it is not installed)."""
    import shutil

    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("Debian's chromium is not installed (make test installs it: make chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def new_page(browser, height: int = 1000):
    """A browser page 1400 px wide with 60 s timeouts (2 shared cores), and the list its
    uncaught script errors are appended to."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors


def overlay_point(page, shape: tuple[int, int], y: int, x: int) -> tuple[float, float]:
    """Page coordinates of image pixel (y, x) on the overlay: the image is drawn at most at its
    natural size (enlarged server-side by display_scale), centred in its box."""
    box = page.locator("#overlay img").bounding_box()
    natural_w, natural_h = page.evaluate(
        "() => { const i = document.querySelector('#overlay img'); "
        "return [i.naturalWidth, i.naturalHeight]; }"
    )
    scale = min(box["width"] / natural_w, box["height"] / natural_h, 1.0)
    left = box["x"] + (box["width"] - natural_w * scale) / 2
    top = box["y"] + (box["height"] - natural_h * scale) / 2
    height, width = shape
    return (
        left + (x + 0.5) / width * natural_w * scale,
        top + (y + 0.5) / height * natural_h * scale,
    )


def http_status(url: str) -> int:
    """The status of a GET on the app under test (loopback only)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def explorer_ctx(explorer_data, tmp_path_factory):
    """The app's shared resources over the session's small index (with the encoder)."""
    from explorer import open_context

    return open_context(
        explorer_data["index"],
        explorer_data["checkpoint"],
        tmp_path_factory.mktemp("cache"),
        device="cpu",
    )


@pytest.fixture(scope="session")
def explorer_app(explorer_data, explorer_ctx):
    """The app launched in this process on a free port; yields its URL."""
    with launched(explorer_ctx, explorer_data) as url:
        yield url


@contextlib.contextmanager
def launched(ctx, data: dict, comparison=None, timeline=None):
    """The app of `ctx` (over the index and checkpoint of `data`; with the Compare tab of
    `comparison`, the Timeline tab of `timeline`) launched in this process on a free port:
    yields its URL, closes it after."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from explorer import build_app, launch_options

    demo = build_app(ctx, comparison, timeline)
    options = launch_options(
        ctx,
        data["index"],
        data["checkpoint"],
        port=free_port(),
        comparison=comparison,
        timeline=timeline,
    )
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    try:
        yield url.rstrip("/")
    finally:
        demo.close()


def write_log(path: Path, steps: int, extra_lines: tuple[str, ...] = ()) -> None:
    """A model.train log.jsonl of `steps` steps (5 per epoch, falling losses), then
    `extra_lines` as they are."""
    lines = [
        json.dumps(
            {"step": s, "epoch": (s - 1) // 5, "loss": 8 - s / 10, "group_loss": 9 - s / 10}
            | {"slot_loss": 7 - s / 10, "lr": 1e-3}
        )
        for s in range(1, steps + 1)
    ]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")
