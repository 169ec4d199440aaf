"""Semantic grouping: cosine dots, attention-weighted slots, pooling over valid pixels only."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.grouping import SemanticGrouping

torch.set_num_threads(1)
B, K, D, h, w = 2, 3, 4, 3, 2


@pytest.fixture
def grouping() -> SemanticGrouping:
    torch.manual_seed(0)
    return SemanticGrouping(K, D, temp=0.07, eps=1e-6).double()


def _reference_slots(z: torch.Tensor, prototypes: torch.Tensor, valid=None, temp=0.07, eps=1e-6):
    """Slots of one image by explicit loops: z (D, h, w), prototypes (K, D)."""
    Dz, hz, wz = z.shape
    Kp = prototypes.shape[0]
    slots = torch.zeros(Kp, Dz, dtype=z.dtype)
    weight_sums = torch.zeros(Kp, dtype=z.dtype)
    for i in range(hz):
        for j in range(wz):
            if valid is not None and not valid[i, j]:
                continue
            pixel = z[:, i, j]
            cos = [
                float(pixel @ prototypes[k]) / (pixel.norm() * prototypes[k].norm())
                for k in range(Kp)
            ]
            exps = [math.exp(c / temp) for c in cos]
            for k in range(Kp):
                a = exps[k] / sum(exps) + eps
                slots[k] += a * pixel
                weight_sums[k] += a
    return slots / weight_sums[:, None]


def test_slots_are_the_attention_weighted_mean(grouping):
    z = torch.randn(B, D, h, w, dtype=torch.float64)
    out = grouping(z)
    assert out.slots.shape == (B, K, D) and out.dots.shape == (B, K, h, w)
    for b in range(B):
        expected = _reference_slots(z[b], grouping.slot_embed.weight.detach())
        torch.testing.assert_close(out.slots[b], expected, rtol=1e-9, atol=1e-9)


def test_slots_pool_the_unnormalised_features(grouping):
    """Scaling z leaves the dots unchanged and scales the slots (pooling over raw z)."""
    z = torch.randn(B, D, h, w, dtype=torch.float64)
    a, b = grouping(z), grouping(3.0 * z)
    torch.testing.assert_close(b.dots, a.dots)
    torch.testing.assert_close(b.slots, 3.0 * a.slots)


def test_dots_are_cosines(grouping):
    z = torch.randn(B, D, h, w, dtype=torch.float64) * 5
    dots = grouping(z).dots
    assert dots.abs().max() <= 1 + 1e-12
    i, j = 2, 1
    expected = F.cosine_similarity(grouping.slot_embed.weight, z[1, :, i, j][None], dim=1)
    torch.testing.assert_close(dots[1, :, i, j], expected)


def test_dots_reach_one_for_a_pixel_on_a_prototype(grouping):
    z = torch.randn(1, D, h, w, dtype=torch.float64)
    z[0, :, 0, 0] = 7.0 * grouping.slot_embed.weight[2].detach()
    dots = grouping(z).dots
    assert dots[0, 2, 0, 0].item() == pytest.approx(1.0)
    assert dots[0, :, 0, 0].argmax().item() == 2


def test_valid_mask_excludes_padded_pixels(grouping):
    z = torch.randn(B, D, h, w, dtype=torch.float64)
    valid = torch.zeros(B, 1, h, w, dtype=torch.bool)
    valid[0, :, :2, :1] = True  # image 0: a 2 x 1 corner
    valid[1] = True  # image 1: everything
    out = grouping(z, valid)
    prototypes = grouping.slot_embed.weight.detach()
    expected0 = _reference_slots(z[0], prototypes, valid=valid[0, 0])
    torch.testing.assert_close(out.slots[0], expected0, rtol=1e-9, atol=1e-9)
    # the same as grouping only the valid region; changing the padding changes nothing
    torch.testing.assert_close(out.slots[0], grouping(z[:1, :, :2, :1]).slots[0])
    z_noise = z.clone()
    z_noise[0, :, 2:, :] = 1e3 * torch.randn(D, 1, w, dtype=torch.float64)
    z_noise[0, :, :, 1:] = 1e3 * torch.randn(D, h, 1, dtype=torch.float64)
    z_noise[0, :, :2, :1] = z[0, :, :2, :1]
    torch.testing.assert_close(grouping(z_noise, valid).slots[0], out.slots[0])
    # an all-valid mask is the same as no mask; and dots are not masked
    torch.testing.assert_close(out.slots[1], grouping(z).slots[1])
    torch.testing.assert_close(out.dots, grouping(z).dots)
    # without the mask the padded pixels do count
    assert not torch.allclose(grouping(z).slots[0], out.slots[0])


def test_gradients_reach_prototypes_and_features(grouping):
    z = torch.randn(B, D, h, w, dtype=torch.float64, requires_grad=True)
    out = grouping(z)
    (out.slots.sum() + out.dots.square().sum()).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert grouping.slot_embed.weight.grad.abs().sum() > 0
