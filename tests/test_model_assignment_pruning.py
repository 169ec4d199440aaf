"""assign_pixels upsamples only the prototypes that can win (model.transforms.candidate_cells):
its maps, pixel counts and scores must be those of upsampling all K prototypes, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from model.checkpoint import load_encoder
from model.transforms import Preprocessed, _grid_axis, assign_pixels, candidate_cells


def upsample_all(dots: torch.Tensor, info: Preprocessed, stride: int):
    """The reference: every prototype upsampled at every pixel, argmax over all K."""
    K = dots.shape[0]
    w_map, h_map = info.map_size
    cells = dots[None, :, :h_map, :w_map].float()
    gx, inside_x = _grid_axis(info, stride, 0)
    gy, inside_y = _grid_axis(info, stride, 1)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
    up = F.grid_sample(cells, grid, mode="bilinear", padding_mode="border", align_corners=False)
    best, winner = up[0].max(dim=0)
    counted = (inside_y[:, None] & inside_x[None, :]).flatten()
    flat = winner.flatten()[counted]
    pixels = torch.bincount(flat, minlength=K).double()
    sums = torch.bincount(flat, weights=best.flatten()[counted].double(), minlength=K)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (sums / pixels).float().numpy()
    return winner.numpy().astype(np.int16), pixels.long().numpy(), score


def assert_same(result, reference) -> None:
    assert np.array_equal(result[0], reference[0])
    assert np.array_equal(result[1], reference[1])
    assert np.array_equal(result[2], reference[2], equal_nan=True)


def random_dots(kind: str, K: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "noise":  # every prototype a candidate somewhere
        return torch.rand(K, h, w, generator=generator) * 2 - 1
    if kind == "smooth":  # few winners, many near-ties along their borders
        coarse = torch.rand(1, K, 2, 2, generator=generator)
        return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    return (torch.rand(K, h, w, generator=generator) * 4).round() / 4  # exact ties


@pytest.mark.parametrize("kind", ["noise", "smooth", "ties"])
def test_pruned_assignment_equals_upsampling_every_prototype(kind):
    rng = np.random.default_rng(3)
    generator = torch.Generator().manual_seed(3)
    for case in range(40):
        K = int(rng.choice([3, 32, 256]))
        stride = int(rng.choice([8, 16]))
        h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
        dots = random_dots(kind, K, h + 1, w + 2, generator)  # with padding cells
        resized = (
            w * stride - int(rng.integers(0, stride)),
            h * stride - int(rng.integers(0, stride)),
        )
        size = (int(rng.integers(1, 200)), int(rng.integers(1, 200)))
        offset = (int(rng.integers(0, 6)), int(rng.integers(0, 6))) if case % 4 == 0 else (0, 0)
        info = Preprocessed(size, resized, (w, h), offset)
        block_rows = int(rng.choice([5, 128]))
        assert_same(assign_pixels(dots, info, stride, block_rows), upsample_all(dots, info, stride))


def test_candidates_include_every_winner_and_leave_out_others():
    generator = torch.Generator().manual_seed(0)
    cells = F.interpolate(torch.rand(1, 64, 3, 3, generator=generator), size=(12, 12))[0]
    candidates = candidate_cells(cells)
    winners = cells.argmax(dim=0)  # each cell's own winner is a candidate of its quad
    assert candidates.gather(0, winners[None]).all()
    assert candidates.sum(dim=0).float().mean() < 64 / 4  # most prototypes are left out


def test_demo_model_maps_on_real_photos_are_those_of_upsampling_every_prototype(photos):
    encoder = load_encoder("assets/demo_encoder.pt", "cpu")
    for path in photos:
        image = Image.open(path).convert("RGB")
        x, info = encoder.preprocess(image)
        dots = encoder(x, encoder.valid_mask([info], x.shape[-2:])).dots[0]
        assert_same(
            assign_pixels(dots, info, encoder.stride), upsample_all(dots, info, encoder.stride)
        )
