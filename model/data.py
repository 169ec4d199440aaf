"""Image collections: a folder (recursive) or a COCO layout split, and the two-view dataset.

Loading applies EXIF orientation and converts any mode (CMYK, 16-bit, palette, alpha) to RGB.
An unreadable file is skipped with a warning and counted, never a crash.
"""

from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Sampler

from model.augment import AugmentConfig, TwoViews, TwoViewTransform

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
log = logging.getLogger(__name__)


class UnreadableImage(ValueError):
    """The file is not an image PIL can decode completely."""


def load_rgb(
    path: str | Path, max_pixels: int | None = None, exif_transpose: bool = True
) -> Image.Image:
    """Decode an image file completely, apply its EXIF orientation, return an RGB image.

    exif_transpose=False keeps the stored orientation (label maps of COCO-Stuff are stored so,
    and PiCIE's protocol reads images without rotating them).
    Raises UnreadableImage with the reason (truncated, not an image, too many pixels).
    """
    try:
        with Image.open(path) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise UnreadableImage(
                    f"{Path(path).name}: {image.width} x {image.height} pixels is more than "
                    f"the limit of {max_pixels:,}"
                )
            image.load()
            return to_rgb(ImageOps.exif_transpose(image) if exif_transpose else image)
    except UnreadableImage:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnreadableImage(f"{Path(path).name}: not a readable image ({error})") from error


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: 16-bit grayscale scaled to 8 bits, alpha composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray((array / peak * 255).clip(0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def list_images(root: str | Path) -> list[Path]:
    """All image files under `root` (recursive), sorted, by suffix (case-insensitive)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def collection_root(data: str | Path, split: str = "") -> Path:
    """A plain folder, or `<data>/<split>` for a COCO layout (e.g. coco/train2017)."""
    return Path(data) / split if split else Path(data)


class ImageCollection(Dataset):
    """Paths of a collection; item i is (RGB image, index actually used)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.paths = list_images(self.root)
        if not self.paths:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {self.root}")
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> tuple[Image.Image, int]:
        """Load image `index`; an unreadable one is skipped (next index) with a warning."""
        for attempt in range(len(self.paths)):
            i = (index + attempt) % len(self.paths)
            try:
                return load_rgb(self.paths[i]), i
            except UnreadableImage as error:
                if self.paths[i] not in self.skipped:
                    self.skipped.add(self.paths[i])
                    warnings.warn(f"skipping unreadable image {error}", stacklevel=2)
        raise UnreadableImage(f"no readable image under {self.root}")


class TwoViewDataset(Dataset):
    """Key epoch * N + i -> (TwoViews of image i, number of unreadable files skipped for it).

    The views are drawn from an rng seeded by (seed, epoch, i); the epoch travels inside the key
    so that persistent DataLoader workers need no state update.
    """

    def __init__(self, images: ImageCollection, augment: AugmentConfig, seed: int = 0):
        self.images = images
        self.transform = TwoViewTransform(augment)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int) -> tuple[TwoViews, int]:
        epoch, index = divmod(key, len(self.images))
        image, used = self.images.load(index)
        rng = random.Random(f"{self.seed}/{epoch}/{used}")
        skipped = (used - index) % len(self.images)
        return self.transform(image, rng), skipped


class EpochSampler(Sampler[int]):
    """This rank's share of a seeded permutation of the data set, as keys epoch * N + i.

    Drops the tail so that every rank gets the same number of full batches (the slot loss
    gathers equal-sized tensors from all ranks).
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world = rank, world
        self.epoch = 0
        self.batches = size // (batch_size * world)
        if self.batches == 0:
            raise ValueError(
                f"{size} images are fewer than one batch ({batch_size} x {world} processes)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches * self.batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        used = order[: self.batches * self.batch_size * self.world]
        mine = used[self.rank :: self.world]
        return iter((mine + self.epoch * self.size).tolist())
