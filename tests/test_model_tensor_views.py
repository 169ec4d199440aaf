"""The batched training pipeline: photometric ops, decoded images, aligned views, the trainer."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from model import augment, tensor_views
from model.augment import IMAGENET_STD, AugmentConfig, TwoViewTransform
from model.checkpoint import read_checkpoint
from model.config import TINY, override
from model.data import ImageCollection
from model.losses import invert_augmentation
from model.photometric import ColourParams, adjust, apply_colour, gaussian_blur, shift_hue_field
from model.tensor_views import BatchTwoViews, DecodedImages
from model.train import train

torch.set_num_threads(1)
PLAIN = ColourParams(False, (0, 1, 2, 3), 1.0, 1.0, 1.0, 0.0, False, (0, 1, 2), 0.0, False)


@pytest.fixture(scope="module")
def smooth_images(tmp_path_factory):
    """12 images of smooth random colour fields (so that a small misalignment shows), 64 x 48."""
    root = tmp_path_factory.mktemp("smooth")
    rng = np.random.default_rng(0)
    for i in range(12):
        small = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
        Image.fromarray(small).resize((64, 48), Image.Resampling.BICUBIC).save(root / f"{i}.png")
    return root


def _batch(seed: int = 0, size: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(size, 3, 20, 24, generator=g)


# ---------------------------------------------------------------- photometric ops


@pytest.mark.parametrize(
    "field, value, reference",
    [
        ("brightness", 1.3, lambda x: TF.adjust_brightness(x, 1.3)),
        ("contrast", 0.7, lambda x: TF.adjust_contrast(x, 0.7)),
        ("saturation", 1.2, lambda x: TF.adjust_saturation(x, 1.2)),
        ("hue", 0.37, lambda x: TF.adjust_hue(x, 0.37)),
        ("hue", -0.45, lambda x: TF.adjust_hue(x, -0.45)),
    ],
)
def test_each_jitter_op_equals_torchvision(field, value, reference):
    x = _batch()
    op = ("brightness", "contrast", "saturation", "hue").index(field)
    order = (op,) + tuple(i for i in range(4) if i != op)
    params = PLAIN._replace(jitter=True, order=order, **{field: value})
    # the other three ops are neutral (factor 1 or shift 0)
    torch.testing.assert_close(apply_colour(x, [params] * 5), reference(x), atol=1e-4, rtol=0)


def test_grayscale_solarize_and_channel_permutation():
    x = _batch()
    gray = apply_colour(x, [PLAIN._replace(grayscale=True)] * 5)
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(x, num_output_channels=3))
    sol = apply_colour(x, [PLAIN._replace(solarize=True)] * 5)
    torch.testing.assert_close(sol, TF.solarize(x, 0.5))
    perm = apply_colour(x, [PLAIN._replace(channels=(2, 0, 1))] * 5)
    torch.testing.assert_close(perm, x[:, [2, 0, 1]])


def test_blur_equals_torchvision_per_image_sigma():
    x = _batch()
    sigmas = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0])
    out = gaussian_blur(x, sigmas)
    torch.testing.assert_close(out[0], x[0])  # sigma 0: untouched
    for i in range(1, 5):
        s = float(sigmas[i])
        k = 2 * int(np.ceil(3 * 2.0)) + 1  # the batch's kernel: wide enough for its largest sigma
        torch.testing.assert_close(
            out[i], TF.gaussian_blur(x[i], [k, k], [s, s]), atol=1e-5, rtol=0
        )


def test_each_image_gets_its_own_parameters():
    x = _batch()
    params = [
        PLAIN,
        PLAIN._replace(jitter=True, brightness=0.5),
        PLAIN._replace(grayscale=True),
        PLAIN._replace(solarize=True),
        PLAIN._replace(blur_sigma=1.0),
    ]
    out = apply_colour(x, params)
    for i, p in enumerate(params):
        torch.testing.assert_close(out[i : i + 1], apply_colour(x[i : i + 1], [p]))
    torch.testing.assert_close(out[0], x[0])


# ---------------------------------------------------------------- decoded images


def test_decoded_images_skip_unreadable_files_and_pad_mixed_sizes(tmp_path):
    Image.new("RGB", (30, 20), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (16, 40), (0, 0, 255)).save(tmp_path / "b.png")
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.warns(UserWarning, match="c.jpg"):
        decoded = DecodedImages(ImageCollection(tmp_path))
    assert len(decoded) == 2 and [p.name for p in decoded.skipped] == ["c.jpg"]
    assert decoded.stacked is None
    batch = decoded.batch([0, 1])
    assert batch.shape == (2, 3, 40, 30)
    assert torch.all(batch[0, 0] == 1) and torch.all(batch[1, 2] == 1)  # border repeated


def test_decoded_images_refuse_a_collection_over_the_memory_limit(smooth_images):
    with pytest.raises(ValueError, match="--pipeline pil"):
        DecodedImages(ImageCollection(smooth_images), max_bytes=10_000)


# ---------------------------------------------------------------- two views of a batch


def _identity_colour(monkeypatch):
    monkeypatch.setattr(tensor_views, "apply_colour", lambda x, params: x)
    monkeypatch.setattr(augment, "_colour", lambda x, params: x)


def _misalignment(views) -> tuple[float, float]:
    """Mean absolute difference of the two views over their overlap, after inverse augmentation:
    for the true pairs, and for view 1 against another sample's view 2 (a baseline)."""
    a = invert_augmentation(views.view1, views.coords1, views.flip1)
    b = invert_augmentation(views.view2, views.coords2, views.flip2)
    return float((a - b).abs().mean()), float((a - b.roll(1, 0)).abs().mean())


@pytest.mark.parametrize("min_scale", [0.1, 0.4])
def test_views_align_under_the_inverse_augmentation(smooth_images, monkeypatch, min_scale):
    """With colour off, the overlap of the two views is the same picture in both (up to
    resampling), for the batched views as for the PIL ones."""
    _identity_colour(monkeypatch)
    cfg = AugmentConfig(size=32, min_scale=min_scale)
    batched = BatchTwoViews(DecodedImages(ImageCollection(smooth_images)), cfg, seed=3)(
        list(range(12))
    )
    pair, other = _misalignment(batched)
    assert pair < 0.2 * other, (pair, other)
    # the PIL pipeline, for comparison, on the same draws
    pil = TwoViewTransform(cfg)
    paths = ImageCollection(smooth_images).paths
    single = [
        pil(Image.open(p).convert("RGB"), random.Random(f"3/0/{i}")) for i, p in enumerate(paths)
    ]
    stacked = type(batched)(*(torch.stack(t) for t in zip(*single)))
    pil_pair, _ = _misalignment(stacked)
    assert pair < 1.5 * pil_pair + 0.02, (pair, pil_pair)


def test_batched_views_use_the_same_draws_as_the_pil_pipeline(smooth_images):
    cfg = AugmentConfig(size=24, min_scale=0.2, hue=0.5, channel_shuffle=0.5)
    collection = ImageCollection(smooth_images)
    keys = [5 + 12 * 2, 0, 11]  # epoch 2 image 5, epoch 0 image 0, epoch 0 image 11
    batched = BatchTwoViews(DecodedImages(collection), cfg, seed=9)(keys)
    pil = TwoViewTransform(cfg)
    for row, key in enumerate(keys):
        epoch, index = divmod(key, 12)
        single = pil(
            Image.open(collection.paths[index]).convert("RGB"), random.Random(f"9/{epoch}/{index}")
        )
        torch.testing.assert_close(batched.coords1[row], single.coords1)
        torch.testing.assert_close(batched.coords2[row], single.coords2)
        assert bool(batched.flip1[row]) == bool(single.flip1)
        # bilinear-area vs bicubic resampling: close, not equal
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        diff = (batched.view1[row] - single.view1) * std
        assert float(diff.abs().mean()) < 0.08, float(diff.abs().mean())
        assert batched.view1[row].shape == (3, 24, 24)


def test_local_views_align_with_their_parent_views(smooth_images, monkeypatch):
    """A local view, un-flipped, is the picture of its box in the parent view (view 1 for even
    local views, view 2 for odd), resampled from the parent with the parent's flip undone."""
    _identity_colour(monkeypatch)
    cfg = AugmentConfig(size=32, min_scale=0.3, local_views=3, local_size=16, local_max_scale=0.1)
    views = BatchTwoViews(DecodedImages(ImageCollection(smooth_images)), cfg, seed=4)(
        list(range(12))
    )
    assert views.local_views.shape == (12, 3, 3, 16, 16)
    assert views.local_boxes.shape == (12, 3, 4) and views.local_flips.shape == (12, 3)
    assert bool(((views.local_boxes >= -1e-5) & (views.local_boxes <= 1 + 1e-5)).all())
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(12, 4)
    for j in range(3):
        parent, parent_flip = (
            (views.view1, views.flip1) if j % 2 == 0 else (views.view2, views.flip2)
        )
        local = invert_augmentation(views.local_views[:, j], whole, views.local_flips[:, j])
        crop = invert_augmentation(parent, views.local_boxes[:, j], parent_flip, (16, 16))
        pair = float((local - crop).abs().mean())
        other = float((local - crop.roll(1, 0)).abs().mean())
        assert pair < 0.2 * other, (j, pair, other)


def test_local_views_leave_the_two_views_unchanged(smooth_images):
    """Local crops are drawn after everything else: a run without them draws what it did."""
    images = DecodedImages(ImageCollection(smooth_images))
    plain = BatchTwoViews(images, AugmentConfig(size=16), 2)([1, 7, 20])
    more = BatchTwoViews(images, AugmentConfig(size=16, local_views=2), 2)([1, 7, 20])
    assert all(torch.equal(a, b) for a, b in zip(plain, more[:6]))
    assert len(plain) == 6 and len(more) == 9


def test_a_uniform_hue_field_is_the_hue_jitter_and_a_varied_one_shifts_each_part():
    x = _batch(size=2)
    same = torch.full((2, 3, 3), 0.3)
    torch.testing.assert_close(shift_hue_field(x, same), adjust(x, 3, torch.tensor(0.3)))
    halves = torch.tensor([[[0.0, 0.4]]]).expand(2, 1, 2)  # left half 0, right half 0.4 turns
    y = shift_hue_field(x, halves)
    torch.testing.assert_close(y[..., :2], x[..., :2], atol=1e-5, rtol=0)  # the left edge: 0
    torch.testing.assert_close(y[..., -2:], adjust(x, 3, torch.tensor(0.4))[..., -2:])


def test_local_hue_cells_recolour_only_the_local_views(smooth_images):
    images = DecodedImages(ImageCollection(smooth_images))
    cfg = AugmentConfig(size=16, local_views=2, local_size=16)
    plain = BatchTwoViews(images, cfg, 5)([2, 9])
    fielded = BatchTwoViews(images, replace(cfg, local_hue_cells=3), 5)([2, 9])
    assert all(torch.equal(a, b) for a, b in zip(plain[:6], fielded[:6]))
    assert torch.equal(plain.local_boxes, fielded.local_boxes)
    assert not torch.allclose(plain.local_views, fielded.local_views)


def test_batched_views_are_deterministic(smooth_images):
    make = BatchTwoViews(DecodedImages(ImageCollection(smooth_images)), AugmentConfig(size=16), 1)
    a, b, c = make([3, 4, 15]), make([3, 4, 15]), make([3, 4, 27])
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.view1[2], c.view1[2])  # image 3 in epoch 1 vs epoch 2
    assert a.view1.dtype == torch.float32 and a.flip1.dtype == torch.bool


# ---------------------------------------------------------------- the trainer


def _cfg(images, out, **changes):
    return override(
        TINY, data=str(images), out=str(out), workers=0, device="cpu", pipeline="tensor", **changes
    )


def test_tensor_pipeline_run_resumes_exactly(smooth_images, tmp_path):
    interrupted = _cfg(smooth_images, tmp_path / "a")
    train(interrupted, stop_after_epochs=1)
    train(interrupted)
    train(_cfg(smooth_images, tmp_path / "b"))
    a = read_checkpoint(tmp_path / "a" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_tensor_pipeline_skips_and_counts_unreadable_images(smooth_images, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted(smooth_images.iterdir()):
        (data / path.name).write_bytes(path.read_bytes())
    (data / "broken.png").write_bytes((smooth_images / "0.png").read_bytes()[:60])
    with pytest.warns(UserWarning, match="broken.png"):
        train(_cfg(data, tmp_path / "run", epochs=1))
    assert "1 unreadable images skipped" in capsys.readouterr().err
    assert (tmp_path / "run" / "encoder.pt").is_file()
