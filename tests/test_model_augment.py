"""Two-view augmentation, image decoding (any mode, EXIF) and the data set / sampler."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image

from model import augment
from model.augment import AugmentConfig, Crop, TwoViewTransform, overlap_coords, sample_crop
from model.data import (
    EpochSampler,
    ImageCollection,
    TwoViewDataset,
    UnreadableImage,
    list_images,
    load_rgb,
)

torch.set_num_threads(1)
S = 24


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))


# ---------------------------------------------------------------- TwoViewTransform


def test_two_view_transform_is_deterministic_for_a_seed(picture):
    transform = TwoViewTransform(AugmentConfig(size=S, min_scale=0.2))
    a = transform(picture, random.Random(7))
    b = transform(picture, random.Random(7))
    c = transform(picture, random.Random(8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("seed", range(12))
def test_two_view_transform_outputs(picture, seed):
    views = TwoViewTransform(AugmentConfig(size=S, min_scale=0.08))(picture, random.Random(seed))
    assert views.view1.shape == (3, S, S) and views.view2.shape == (3, S, S)
    assert views.view1.dtype == torch.float32
    for coords in (views.coords1, views.coords2):
        assert coords.shape == (4,)
        assert coords.min() >= -1e-6 and coords.max() <= 1 + 1e-6
        assert coords[0] <= coords[2] and coords[1] <= coords[3]
    assert views.flip1.dtype == torch.bool and views.flip1.shape == ()
    # the overlap's aspect in both views describes one and the same image region
    w1, h1 = (views.coords1[2:] - views.coords1[:2]).tolist()
    w2, h2 = (views.coords2[2:] - views.coords2[:2]).tolist()
    assert (w1 > 0) == (w2 > 0) and (h1 > 0) == (h2 > 0)


def test_views_are_normalised_and_flips_vary(picture):
    flips = set()
    for seed in range(20):
        views = TwoViewTransform(AugmentConfig(size=S))(picture, random.Random(seed))
        flips.add((bool(views.flip1), bool(views.flip2)))
        # ImageNet normalisation: a [0, 1] image maps into about [-2.2, 2.7]
        assert views.view1.min() >= -2.2 and views.view1.max() <= 2.7
    assert len(flips) >= 3


def test_flip_mirrors_the_coords():
    crop = Crop(10.0, 20.0, 40.0, 30.0)
    box = (20.0, 26.0, 30.0, 41.0)
    plain = overlap_coords(crop, box, flip=False)
    torch.testing.assert_close(plain, torch.tensor([0.25, 0.2, 0.5, 0.7]))
    mirrored = overlap_coords(crop, box, flip=True)
    torch.testing.assert_close(mirrored, torch.tensor([0.5, 0.2, 0.75, 0.7]))


def test_flipped_view_is_the_mirror_image(picture, monkeypatch):
    """With colour off, a flipped view is the unflipped crop mirrored, coords mirrored too."""
    monkeypatch.setattr(augment, "_colour", lambda x, params: x)
    transform = TwoViewTransform(AugmentConfig(size=S))
    found = False
    for seed in range(20):
        views = transform(picture, random.Random(seed))
        if views.flip1:
            crop = augment.sample_crop(random.Random(seed), *picture.size, 0.08)
            unflipped = augment.normalize(transform._view(picture, crop, False))
            torch.testing.assert_close(views.view1, unflipped.flip(-1))
            found = True
            break
    assert found


@pytest.mark.parametrize("size", [(50, 30), (30, 50), (7, 300), (16, 16)])
def test_sample_crop_stays_within_the_image(size):
    W, H = size
    rng = random.Random(0)
    for _ in range(300):
        c = sample_crop(rng, W, H, 0.08)
        assert c.width > 0 and c.height > 0
        assert c.left >= 0 and c.top >= 0
        assert c.left + c.width <= W + 1e-9 and c.top + c.height <= H + 1e-9


def test_sample_crop_respects_the_scale_range():
    rng = random.Random(1)
    areas = [
        (c.width * c.height) / (100 * 100)
        for c in (sample_crop(rng, 100, 100, 0.5) for _ in range(200))
    ]
    assert min(areas) >= 0.5 - 1e-9 and max(areas) <= 1 + 1e-9


# ---------------------------------------------------------------- load_rgb


def test_16_bit_png(tmp_path):
    array = (np.arange(16 * 12).reshape(12, 16) * 300).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    assert Image.open(path).mode.startswith("I")
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (16, 12)
    out = np.asarray(image)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert (out[..., 0] == out[..., 1]).all()
    # scaled from 16 to 8 bits (the full 16-bit range maps onto 0..255), order kept
    expected = array / 65535 * 255
    assert np.abs(out[..., 0] - expected).max() <= 1
    assert (np.diff(out[..., 0].flatten().astype(int)) >= 0).all()


def test_palette_png_with_transparency(tmp_path):
    image = Image.new("P", (8, 6))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pixels = np.zeros((6, 8), dtype=np.uint8)
    pixels[:, 4:] = 1  # left half index 0 (transparent), right half index 1 (blue)
    image.putdata(pixels.flatten().tolist())
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    out = np.asarray(load_rgb(path))
    assert out.shape == (6, 8, 3)
    assert out[0, 0].tolist() == [255, 255, 255]  # transparent red -> white background
    assert out[0, 7].tolist() == [0, 0, 255]


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (10, 8), (0, 255, 255, 0)).save(path, quality=95)  # red in CMYK
    assert Image.open(path).mode == "CMYK"
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (10, 8)
    r, g, b = np.asarray(image)[4, 5].tolist()
    assert r > 200 and g < 60 and b < 60


def _orientation_exif(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value  # Orientation
    return exif.tobytes()


def test_exif_rotated_jpeg(tmp_path):
    """Stored landscape with orientation 6 (rotate 90 clockwise to view): shown as portrait."""
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red, right half blue in the stored pixels
    stored[:, 20:] = (0, 0, 255)
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=_orientation_exif(6), quality=95)
    image = load_rgb(path)
    assert image.size == (20, 40)  # (W, H): portrait
    out = np.asarray(image).astype(int)
    # rotating 90 degrees clockwise puts the stored left half (red) on top
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60


def test_truncated_jpeg_raises(tmp_path):
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(UnreadableImage, match="cut.jpg"):
        load_rgb(path)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UnreadableImage):
        load_rgb(tmp_path / "text.png")


def test_max_pixels_refuses_huge_images(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (50, 40)).save(path)
    assert load_rgb(path, max_pixels=2000).size == (50, 40)
    with pytest.raises(UnreadableImage, match="limit"):
        load_rgb(path, max_pixels=1999)


# ---------------------------------------------------------------- collections


def _write_folder(root, n: int = 4, bad: tuple[int, ...] = ()) -> None:
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        path = root / ("sub" if i % 2 else "") / f"img{i}.png"
        if i in bad:
            path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        else:
            Image.new("RGB", (20 + i, 16), (10 * i, 0, 0)).save(path)
    (root / "notes.txt").write_text("ignored")


def test_list_images_is_recursive_and_sorted(tmp_path):
    _write_folder(tmp_path)
    found = list_images(tmp_path)
    assert [p.name for p in found] == ["img0.png", "img2.png", "img1.png", "img3.png"]
    assert found == sorted(found)


def test_image_collection_skips_unreadable_files(tmp_path):
    _write_folder(tmp_path, n=4, bad=(2,))
    collection = ImageCollection(tmp_path)
    assert len(collection) == 4
    order = [p.name for p in collection.paths]
    bad_index = order.index("img2.png")
    with pytest.warns(UserWarning, match="img2.png"):
        image, used = collection.load(bad_index)
    assert image.mode == "RGB" and used == (bad_index + 1) % 4
    assert collection.paths[used].name != "img2.png"
    assert collection.skipped == {tmp_path / "img2.png"}
    # readable ones come back as themselves
    good = order.index("img3.png")
    assert collection.load(good)[1] == good
    # the data set still yields views for the bad index, counting the skip
    dataset = TwoViewDataset(collection, AugmentConfig(size=16), seed=0)
    views, skipped = dataset[bad_index]
    assert views.view1.shape == (3, 16, 16) and skipped == 1


def test_image_collection_with_only_unreadable_files(tmp_path):
    _write_folder(tmp_path, n=2, bad=(0, 1))
    with pytest.warns(UserWarning):
        with pytest.raises(UnreadableImage):
            ImageCollection(tmp_path).load(0)


def test_empty_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageCollection(tmp_path)


def test_dataset_views_depend_on_seed_epoch_and_index(tmp_path):
    _write_folder(tmp_path, n=4)
    collection = ImageCollection(tmp_path)
    dataset = TwoViewDataset(collection, AugmentConfig(size=16), seed=3)
    first, again = dataset[1][0], dataset[1][0]
    assert torch.equal(first.view1, again.view1)
    next_epoch = dataset[1 + len(collection)][0]  # same image, epoch 1
    assert not torch.equal(first.view1, next_epoch.view1)
    other_seed = TwoViewDataset(collection, AugmentConfig(size=16), seed=4)[1][0]
    assert not torch.equal(first.view1, other_seed.view1)


# ---------------------------------------------------------------- sampler


def test_epoch_sampler_shares_are_disjoint_and_equal():
    size, batch, world = 23, 3, 2
    shares = [list(EpochSampler(size, batch, seed=5, rank=r, world=world)) for r in range(world)]
    assert len(shares[0]) == len(shares[1]) == (size // (batch * world)) * batch
    assert len(EpochSampler(size, batch, 5, 0, world)) == len(shares[0])
    assert not set(shares[0]) & set(shares[1])
    assert all(0 <= key < size for share in shares for key in share)


def test_epoch_sampler_orders_differ_per_epoch_and_keys_carry_the_epoch():
    sampler = EpochSampler(20, 4, seed=0)
    first = list(sampler)
    assert list(sampler) == first  # same epoch: same order
    sampler.set_epoch(1)
    second = list(sampler)
    assert all(20 <= key < 40 for key in second)
    assert sorted(k - 20 for k in second) == sorted(first) == list(range(20))
    assert [k - 20 for k in second] != first
    assert list(EpochSampler(20, 4, seed=1)) != first


def test_epoch_sampler_refuses_fewer_images_than_a_batch():
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochSampler(5, 4, seed=0, world=2)
