"""SlotCon's losses: group loss formula, prototype presence, slot InfoNCE positives, alignment."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from model import augment
from model.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    Crop,
    TwoViewTransform,
    overlap_coords,
    sample_crop,
)
from model.losses import (
    group_loss,
    invert_augmentation,
    present_prototypes,
    sinkhorn_targets,
    slot_loss,
)

torch.set_num_threads(1)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


# ---------------------------------------------------------------- group loss


def test_group_loss_equals_the_per_pixel_formula():
    torch.manual_seed(0)
    B, K, h, w = 2, 5, 3, 2
    dots_q = torch.rand(B, K, h, w, dtype=torch.float64) * 2 - 1
    dots_k = torch.rand(B, K, h, w, dtype=torch.float64) * 2 - 1
    center = torch.randn(1, K, dtype=torch.float64) * 0.1
    ts, tt = 0.1, 0.07
    total, n = 0.0, 0
    for b in range(B):
        for i in range(h):
            for j in range(w):
                q = [dots_q[b, k, i, j].item() for k in range(K)]
                t = [(dots_k[b, k, i, j].item() - center[0, k].item()) / tt for k in range(K)]
                z_t = sum(math.exp(v) for v in t)
                z_q = sum(math.exp(v / ts) for v in q)
                for k in range(K):
                    target = math.exp(t[k]) / z_t
                    log_p = q[k] / ts - math.log(z_q)
                    total -= target * log_p
                n += 1
    expected = total / n
    assert group_loss(dots_q, dots_k, center, ts, tt).item() == pytest.approx(expected, rel=1e-10)
    # the centre matters, and the temperatures are not interchangeable
    assert group_loss(dots_q, dots_k, 0 * center, ts, tt).item() != pytest.approx(expected)
    assert group_loss(dots_q, dots_k, center, tt, ts).item() != pytest.approx(expected)


def test_group_loss_is_smallest_when_student_agrees_with_teacher():
    torch.manual_seed(1)
    dots_k = torch.rand(2, 4, 3, 3) * 2 - 1
    center = torch.zeros(1, 4)
    same_t = group_loss(dots_k, dots_k, center, 0.07, 0.07)
    other = group_loss(torch.rand(2, 4, 3, 3) * 2 - 1, dots_k, center, 0.07, 0.07)
    assert same_t < other


# ---------------------------------------------------------------- presence


def _dots_from_winners(winners: list[list[int]], K: int, h: int, w: int) -> torch.Tensor:
    """(B, K, h, w) dots whose per-pixel argmax is the given prototype (row-major pixels)."""
    B = len(winners)
    dots = torch.rand(B, K, h, w) * 0.5 - 0.25
    for b, pixels in enumerate(winners):
        assert len(pixels) == h * w
        for p, k in enumerate(pixels):
            dots[b, k, p // w, p % w] = 0.9
    return dots


def test_present_prototypes_on_hand_made_dots():
    dots = torch.full((2, 4, 2, 2), -0.5)
    dots[0, 1, 0, 0] = 0.9  # image 0: prototype 1 wins pixel (0, 0) ...
    dots[0, 3, :, :] = 0.1  # ... and prototype 3 the other three
    dots[0, 3, 0, 0] = 0.2
    dots[1, 2] = 0.3  # image 1: prototype 2 everywhere
    dots[1, 0, 1, 1] = 0.31  # except one pixel for prototype 0
    expected = torch.tensor([[False, True, False, True], [True, False, True, False]])
    assert torch.equal(present_prototypes(dots), expected)
    assert present_prototypes(dots).dtype == torch.bool


# ---------------------------------------------------------------- slot loss

# presence per image (B = 2, K = 4): queries need both views, keys the key view only
WINNERS_Q = [[0, 1, 2, 2], [1, 2, 1, 2]]  # view a: image 0 {0, 1, 2}, image 1 {1, 2}
WINNERS_K = [[0, 1, 3, 3], [3, 1, 2, 2]]  # view b: image 0 {0, 1, 3}, image 1 {1, 2, 3}
QUERY_PAIRS = [(0, 0), (0, 1), (1, 1), (1, 2)]  # (image, prototype) present in both views
KEY_PAIRS = [(0, 0), (0, 1), (0, 3), (1, 1), (1, 2), (1, 3)]  # present in view b


def _presence_case(D: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, K = 2, 4
    slots_q = torch.randn(B, K, D, generator=g, dtype=torch.float64)
    slots_k = torch.randn(B, K, D, generator=g, dtype=torch.float64)
    dots_q = _dots_from_winners(WINNERS_Q, K, 2, 2).double()
    dots_k = _dots_from_winners(WINNERS_K, K, 2, 2).double()
    return slots_q, slots_k, dots_q, dots_k


def test_slot_loss_equals_hand_computed_cross_entropy():
    slots_q, slots_k, dots_q, dots_k = _presence_case()
    temp = 0.2
    total = 0.0
    for b, k in QUERY_PAIRS:
        q = F.normalize(slots_q[b, k], dim=0)
        logits = [float(q @ F.normalize(slots_k[bb, kk], dim=0)) / temp for bb, kk in KEY_PAIRS]
        positive = KEY_PAIRS.index((b, k))
        total += -(logits[positive] - math.log(sum(math.exp(v) for v in logits)))
    expected = total / len(QUERY_PAIRS) * 2 * temp
    loss = slot_loss(slots_q, slots_k, dots_q, dots_k, identity, temp)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_slot_loss_predictor_sees_only_the_queries():
    slots_q, slots_k, dots_q, dots_k = _presence_case()
    seen = []

    def predictor(x):
        seen.append(x.clone())
        return x

    slot_loss(slots_q, slots_k, dots_q, dots_k, predictor, 0.2)
    expected = torch.stack([slots_q[b, k] for b, k in QUERY_PAIRS])
    assert len(seen) == 1 and torch.equal(seen[0], expected)


def test_slot_loss_is_near_its_minimum_when_keys_equal_queries():
    """Orthogonal slots, keys = queries: each query matches only its positive."""
    B, K, D = 2, 4, 8
    basis = torch.eye(D, dtype=torch.float64)
    slots = basis.view(B, K, D) * 3.0  # 8 distinct orthogonal directions
    _, _, dots_q, dots_k = _presence_case()
    temp = 0.2
    loss = slot_loss(slots, slots, dots_q, dots_k, identity, temp).item()
    M = len(KEY_PAIRS)
    minimum = math.log(1 + (M - 1) * math.exp(-1 / temp)) * 2 * temp  # cos 1 vs cos 0
    assert loss == pytest.approx(minimum, rel=1e-9)
    # permuting the keys (the positives move) raises the loss
    for perm in ([1, 0, 3, 2], [3, 2, 1, 0], [1, 2, 3, 0]):
        permuted = slots[:, perm]
        assert slot_loss(slots, permuted, dots_q, dots_k, identity, temp).item() > loss + 0.1
    # swapping the images of the keys also moves the positives
    assert slot_loss(slots, slots.flip(0), dots_q, dots_k, identity, temp).item() > loss + 0.1


def test_slot_loss_ignores_absent_prototypes():
    """Slots of prototypes absent from the key view are no keys; absent queries are no queries."""
    slots_q, slots_k, dots_q, dots_k = _presence_case()
    base = slot_loss(slots_q, slots_k, dots_q, dots_k, identity, 0.2)
    changed_q, changed_k = slots_q.clone(), slots_k.clone()
    changed_k[0, 2] = 100 * torch.randn(6, dtype=torch.float64)  # absent in view b
    changed_k[1, 0] = 100 * torch.randn(6, dtype=torch.float64)
    changed_q[0, 3] = 100 * torch.randn(6, dtype=torch.float64)  # absent in view a
    changed_q[1, 3] = 100 * torch.randn(6, dtype=torch.float64)  # present in b, not in a
    after = slot_loss(changed_q, changed_k, dots_q, dots_k, identity, 0.2)
    assert after.item() == pytest.approx(base.item(), rel=1e-12)
    changed_k[1, 3] = 100 * torch.randn(6, dtype=torch.float64)  # a present key (negative)
    after = slot_loss(changed_q, changed_k, dots_q, dots_k, identity, 0.2)
    assert after.item() != pytest.approx(base.item())


def test_slot_loss_gradient_flows_to_queries_not_keys():
    slots_q, slots_k, dots_q, dots_k = _presence_case()
    slots_q.requires_grad_(True)
    slots_k.requires_grad_(True)
    slot_loss(slots_q, slots_k, dots_q, dots_k, identity, 0.2).backward()
    assert slots_q.grad.abs().sum() > 0
    assert slots_k.grad is None


# ---------------------------------------------------------------- inverse augmentation

MAP = 24  # side of the dots maps


def _blob(x: float, y: float, sigma: float = 1.2, size: int = MAP) -> torch.Tensor:
    """(1, 1, size, size) Gaussian bump centred at continuous map position (x, y)."""
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    return torch.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * sigma**2))[None, None].float()


def _marker_map(crop: Crop, marker: tuple[float, float], flip: bool) -> torch.Tensor:
    """The view's map with a bump at the marker (image pixels), mirrored if the view is."""
    u = (marker[0] - crop.left) / crop.width
    v = (marker[1] - crop.top) / crop.height
    if flip:
        u = 1 - u
    return _blob(u * MAP, v * MAP)


def _peak(aligned: torch.Tensor) -> np.ndarray:
    index = aligned[0, 0].argmax().item()
    return np.array(divmod(index, aligned.shape[-1]))  # (row, col)


def _big_overlap_crops(seed: int) -> tuple[Crop, Crop, tuple[float, float, float, float]]:
    rng = random.Random(seed)
    while True:
        c1, c2 = sample_crop(rng, 200, 150, 0.3), sample_crop(rng, 200, 150, 0.3)
        box = augment._intersection(c1, c2)
        # the overlap must span a good part of both crops for a sharp comparison
        if min(box[2] - box[0], box[3] - box[1]) > 0.4 * max(c1.width, c2.width, c1.height):
            return c1, c2, box


@pytest.mark.parametrize("flips", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invert_augmentation_aligns_a_marker(flips, seed):
    c1, c2, box = _big_overlap_crops(seed)
    rng = np.random.default_rng(seed)
    # a marker off the overlap's centre (so that a missing un-flip would be caught)
    fx, fy = rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.8)
    marker = (box[0] + fx * (box[2] - box[0]), box[1] + fy * (box[3] - box[1]))
    aligned = []
    for crop, flip in zip((c1, c2), flips):
        dots = _marker_map(crop, marker, flip)
        coords = overlap_coords(crop, box, flip)[None]
        aligned.append(invert_augmentation(dots, coords, torch.tensor([flip])))
    assert aligned[0].shape == (1, 1, MAP, MAP)
    p1, p2 = _peak(aligned[0]), _peak(aligned[1])
    assert np.abs(p1 - p2).max() <= 1, (p1, p2)
    # and both at the marker's place in the overlap, in image orientation (not mirrored)
    expected = np.array([fy * MAP, fx * MAP])
    assert np.abs(p1 + 0.5 - expected).max() <= 1.5, (p1, expected)


@pytest.mark.parametrize("seed", [3, 4, 5, 6, 7, 8])
def test_invert_augmentation_with_the_real_two_view_transform(seed, monkeypatch):
    """TwoViewTransform's crops, flips and coords (colour off): a bright spot in the image lands
    at the same aligned position of both views."""
    monkeypatch.setattr(augment, "_colour", lambda x, params: x)
    crops = []
    real_sample_crop = augment.sample_crop

    def recording(*args):
        crops.append(real_sample_crop(*args))
        return crops[-1]

    monkeypatch.setattr(augment, "sample_crop", recording)
    transform = TwoViewTransform(AugmentConfig(size=MAP, min_scale=0.35))
    W, H = 160, 120
    views = transform(Image.new("RGB", (W, H)), random.Random(seed))  # to learn the crops
    box = augment._intersection(crops[0], crops[-1])
    marker = (box[0] + 0.3 * (box[2] - box[0]), box[1] + 0.6 * (box[3] - box[1]))
    # a smooth bright spot (sigma ~ 1/20 of the image) on black
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    spot = np.exp(-((xx - marker[0]) ** 2 + (yy - marker[1]) ** 2) / (2 * 6.0**2))
    image = Image.fromarray((np.repeat(spot[..., None], 3, axis=2) * 255).astype(np.uint8))
    views = transform(image, random.Random(seed))
    flips = []
    aligned = []
    for view, coords, flip in (
        (views.view1, views.coords1, views.flip1),
        (views.view2, views.coords2, views.flip2),
    ):
        red = view[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # back to [0, 1]
        flips.append(bool(flip))
        aligned.append(invert_augmentation(red[None, None], coords[None], flip[None]))
    p1, p2 = _peak(aligned[0]), _peak(aligned[1])
    assert np.abs(p1 - p2).max() <= 1, (p1, p2, flips)


def test_sinkhorn_targets_share_the_pixels_equally():
    """Teacher dots that all favour prototype 0: centering-free targets are rebalanced so that
    every prototype gets about 1/K of the pixels, each pixel's target still a distribution."""
    torch.manual_seed(0)
    B, K, h, w = 4, 6, 5, 5
    dots = torch.randn(B, K, h, w) * 0.1
    dots[:, 0] += 0.5  # prototype 0 wins everywhere
    targets = sinkhorn_targets(dots, teacher_temp=0.1, iterations=10)
    assert targets.shape == (B * h * w, K)
    torch.testing.assert_close(targets.sum(1), torch.ones(B * h * w), atol=1e-4, rtol=0)
    share = targets.sum(0) / targets.sum()
    torch.testing.assert_close(share, torch.full((K,), 1 / K), atol=0.02, rtol=0)
    plain = torch.softmax(dots.permute(0, 2, 3, 1).reshape(-1, K) / 0.1, dim=1)
    assert plain.sum(0)[0] / plain.sum() > 0.9  # without balancing, one prototype takes all
    # rebalancing scales rows and columns only: the odds of two prototypes within a pixel keep
    # their ratio to the unbalanced odds, one factor per pair of prototypes
    factor = (targets[:, 3] / targets[:, 2]) / (plain[:, 3] / plain[:, 2])
    torch.testing.assert_close(factor, factor[0].expand_as(factor), rtol=1e-3, atol=0)


def test_group_loss_with_sinkhorn_targets():
    torch.manual_seed(1)
    q, k = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    loss = group_loss(q, k, torch.zeros(1, 4), 0.1, 0.07, balance="sinkhorn")
    log_p = torch.log_softmax(q.permute(0, 2, 3, 1).reshape(-1, 4) / 0.1, dim=1)
    expected = -(sinkhorn_targets(k, 0.07) * log_p).sum(1).mean()
    torch.testing.assert_close(loss, expected)
