"""SlotConEncoder: preprocessing, valid masks, pixel assignment, inference-only behaviour."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from model import ImageTransform, Preprocessed, SlotConEncoder, assign_pixels
from model.augment import IMAGENET_MEAN, IMAGENET_STD
from model.config import TINY

torch.set_num_threads(1)
K = TINY.model.num_prototypes
STRIDE = TINY.model.output_stride


@pytest.fixture(scope="module")
def encoder() -> SlotConEncoder:
    torch.manual_seed(0)
    enc = SlotConEncoder(TINY.model, input_size=40)
    # non-trivial BatchNorm statistics, so that eval mode matters
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return enc.to("cpu")


def _picture(W: int, H: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((W, H), Image.Resampling.BILINEAR)


# ---------------------------------------------------------------- preprocess


@pytest.mark.parametrize("W, H", [(50, 30), (30, 50), (40, 40), (33, 71)])
def test_preprocess_keeps_aspect_and_pads_to_the_stride(encoder, W, H):
    size = 24
    x, info = encoder.preprocess(_picture(W, H), size)
    rw, rh = info.resized_size
    assert info.image_size == (W, H)
    assert min(rw, rh) == size
    assert abs(rw / rh - W / H) <= 1 / min(rw, rh) * max(1, W / H)
    assert x.shape[:2] == (1, 3) and x.shape[2] % STRIDE == 0 and x.shape[3] % STRIDE == 0
    assert x.shape[2] == math.ceil(rh / STRIDE) * STRIDE
    assert x.shape[3] == math.ceil(rw / STRIDE) * STRIDE
    w, h = info.map_size
    assert (w - 1) * STRIDE < rw <= w * STRIDE and (h - 1) * STRIDE < rh <= h * STRIDE
    assert (w, h) == (x.shape[3] // STRIDE, x.shape[2] // STRIDE)
    # padding (bottom/right) is zero, the image region is the normalised resized image
    assert torch.all(x[..., rh:, :] == 0) and torch.all(x[..., :, rw:] == 0)
    resized = _picture(W, H).resize((rw, rh), Image.Resampling.BICUBIC)
    expected = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float() / 255
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    torch.testing.assert_close(x[0, :, :rh, :rw], (expected - mean) / std)


def test_preprocess_default_size_and_long_side_cap(encoder):
    _, info = encoder.preprocess(_picture(60, 80))
    assert min(info.resized_size) == encoder.input_size == 40
    _, info = encoder.preprocess(_picture(400, 10), size=20)  # a panorama strip
    assert info.resized_size == (80, 2)  # longer side capped at 4 x size


def test_valid_mask(encoder):
    infos = [
        Preprocessed((50, 30), (40, 24), (3, 2)),
        Preprocessed((30, 30), (24, 24), (2, 2)),
    ]
    mask = encoder.valid_mask(infos, padded_hw=(32, 48))
    assert mask.shape == (2, 1, 2, 3) and mask.dtype == torch.bool
    assert mask[0].all()
    assert mask[1, 0].tolist() == [[True, True, False], [True, True, False]]


def test_the_transform_needs_no_weights_and_is_the_encoders(encoder):
    """Workers preprocess with a pickled ImageTransform: the same tensors as the encoder's."""
    transform = pickle.loads(pickle.dumps(ImageTransform(STRIDE, 40)))
    assert encoder.transform == transform
    assert (encoder.stride, encoder.input_size) == (STRIDE, 40)
    for size in (None, 24):
        x, info = transform.apply_image(_picture(50, 30, seed=2), size)
        y, expected = encoder.preprocess(_picture(50, 30, seed=2), size)
        assert info == expected and torch.equal(x, y)
    assert torch.equal(
        transform.valid_mask([info], x.shape[-2:]), encoder.valid_mask([info], x.shape[-2:])
    )


# ---------------------------------------------------------------- group / assign_pixels


@pytest.mark.parametrize("W, H", [(37, 23), (64, 48), (20, 90)])
def test_group_returns_a_full_assignment(encoder, W, H):
    result = encoder.group(_picture(W, H, seed=W), size=32)
    assert result.assignment.shape == (H, W) and result.assignment.dtype == np.int16
    assert result.assignment.min() >= 0 and result.assignment.max() < K
    assert result.pixels.shape == (K,) and result.pixels.sum() == H * W
    assert np.array_equal(result.pixels, np.bincount(result.assignment.ravel(), minlength=K))
    assert result.score.shape == (K,) and result.score.dtype == np.float32
    assert np.array_equal(np.isfinite(result.score), result.pixels > 0)
    assert np.all(result.score[result.pixels > 0] <= 1 + 1e-6)
    assert result.slots.shape == (K, TINY.model.dim_out) and np.isfinite(result.slots).all()


def test_group_slots_equal_the_forward_pass(encoder):
    image = _picture(37, 23)
    x, info = encoder.preprocess(image, 32)
    out = encoder(x, encoder.valid_mask([info], x.shape[-2:]))
    np.testing.assert_allclose(encoder.group(image, 32).slots, out.slots[0].numpy(), rtol=1e-5)


def test_batch_padding_cells_are_left_out_of_the_slots(encoder):
    """In a batch padded to its largest image, the smaller image's slots ignore the padding."""
    big, small = _picture(64, 32), _picture(32, 32, seed=1)
    (xb, ib), (xs, is_) = encoder.preprocess(big, 32), encoder.preprocess(small, 32)
    batch = torch.cat([xb, F.pad(xs, (0, xb.shape[-1] - xs.shape[-1]))])  # (2, 3, 32, 64)
    valid = encoder.valid_mask([ib, is_], batch.shape[-2:])
    assert valid[0].all() and not valid[1].all()
    masked, unmasked = encoder(batch, valid), encoder(batch)
    torch.testing.assert_close(masked.slots[0], unmasked.slots[0])
    assert not torch.allclose(masked.slots[1], unmasked.slots[1])
    # the same as pooling the smaller image's own cells of the batch's projected map
    z = encoder.projector(encoder.backbone(batch))[1:, :, :, : is_.map_size[0]]
    torch.testing.assert_close(masked.slots[1:], encoder.grouping(z).slots)


def test_assign_pixels_matches_bilinear_upsampling_at_scale_one():
    torch.manual_seed(0)
    h, w, stride = 3, 5, 8
    dots = torch.rand(K, h, w) * 2 - 1
    info = Preprocessed((w * stride, h * stride), (w * stride, h * stride), (w, h))
    assignment, pixels, score = assign_pixels(dots, info, stride, block_rows=7)
    up = F.interpolate(dots[None], scale_factor=stride, mode="bilinear", align_corners=False)[0]
    best, expected = up.max(dim=0)
    assert np.array_equal(assignment, expected.numpy())
    assert np.array_equal(pixels, np.bincount(expected.flatten().numpy(), minlength=K))
    for k in range(K):
        chosen = best[expected == k]
        if len(chosen):
            assert score[k] == pytest.approx(chosen.double().mean().item(), rel=1e-5)
        else:
            assert np.isnan(score[k])


def test_assign_pixels_ignores_padding_cells():
    torch.manual_seed(1)
    stride = 8
    dots = torch.rand(K, 4, 4) * 0.5
    dots[K - 1] = -1
    dots[K - 1, 3, :] = 1.0  # prototype K-1 wins only the padding row and column
    dots[K - 1, :, 3] = 1.0
    info = Preprocessed((50, 45), (24, 22), (3, 3))  # 3 x 3 valid cells; image upscaled
    assignment, pixels, _ = assign_pixels(dots, info, stride)
    assert assignment.shape == (45, 50)
    assert pixels[K - 1] == 0 and pixels.sum() == 45 * 50
    # without padding the same prototype wins the bottom/right
    full = Preprocessed((50, 45), (32, 32), (4, 4))
    assert assign_pixels(dots, full, stride)[1][K - 1] > 0


def test_assign_pixels_follows_the_cells_geometrically():
    """A prototype that wins only the left column of cells wins (about) the left of the image."""
    stride = 16
    dots = torch.zeros(K, 2, 4)
    dots[1, :, 0] = 1.0
    dots[2, :, 1:] = 1.0
    info = Preprocessed((120, 60), (64, 32), (4, 2))  # image shown at 120 x 60
    assignment, _, _ = assign_pixels(dots, info, stride)
    # the boundary between cell 0 and 1 (resized x = 16 +/- half a cell) is at image x ~ 30
    assert (assignment[:, :22] == 1).all() and (assignment[:, 38:] == 2).all()


# ---------------------------------------------------------------- inference only


def test_encoder_has_no_trainable_parameters_and_stays_in_eval(encoder):
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.training
    encoder.train()
    assert not encoder.training
    assert not any(m.training for m in encoder.modules())
    x = torch.randn(2, 3, 32, 32)
    a = encoder(x).dots
    b = encoder(x[:1]).dots  # eval BatchNorm: an image's output does not depend on the batch
    torch.testing.assert_close(a[:1], b)
    assert encoder.device.type == "cpu"
    assert encoder.prototypes.shape == (K, TINY.model.dim_out)
    torch.testing.assert_close(encoder.prototypes.norm(dim=1), torch.ones(K))


def test_forward_outputs(encoder):
    out = encoder(torch.randn(2, 3, 48, 32))
    assert out.dots.shape == (2, K, 3, 2) and out.dots.dtype == torch.float32
    assert out.slots.shape == (2, K, TINY.model.dim_out) and out.slots.dtype == torch.float32
    assert not out.dots.requires_grad
    assert out.dots.abs().max() <= 1 + 1e-5


def test_real_photos_group_at_their_own_resolution(encoder, photos):
    """scikit-image's photos (RGB and grayscale, PNG and JPEG, mixed aspect ratios)."""
    from conftest import PHOTOS

    from model.data import load_rgb

    for path in photos:
        W, H, _ = PHOTOS[path.name]
        grouping = encoder.group(load_rgb(path))
        assert grouping.assignment.shape == (H, W), path.name
        assert grouping.pixels.sum() == W * H
        present = grouping.pixels > 0
        assert np.isfinite(grouping.score[present]).all()
        assert np.isnan(grouping.score[~present]).all()


def test_inference_is_fp32_unless_bf16_is_asked_for(encoder):
    assert encoder.precision == "fp32"
    x, info = encoder.preprocess(_picture(50, 40, seed=3))
    valid = encoder.valid_mask([info], x.shape[-2:])
    with torch.inference_mode():
        z = encoder.projector(encoder.backbone(x))  # plain fp32, no autocast
        reference = encoder.grouping(z, valid.to(z.device))
    fp32 = encoder(x, valid)
    torch.testing.assert_close(fp32.dots, reference.dots, rtol=0, atol=0)
    bf16 = SlotConEncoder(TINY.model, input_size=40, precision="bf16")
    bf16.load_state_dict(encoder.state_dict())
    low = bf16(x, valid)
    assert low.dots.dtype == torch.float32 and low.slots.dtype == torch.float32
    assert not torch.equal(low.dots, fp32.dots)  # autocast did run
    torch.testing.assert_close(low.dots, fp32.dots, rtol=0, atol=0.1)
    with pytest.raises(ValueError, match="precision"):
        SlotConEncoder(TINY.model, precision="fp16")
