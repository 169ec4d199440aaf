"""CUDA: a short bf16 training run; the encoder on CUDA (fp32 by default, bf16 when asked)
against the CPU; an index that does not depend on the batch size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model import assign_pixels, load_encoder
from model.config import TINY, override
from model.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _picture(seed: int, W: int = 96, H: int = 72) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((W, H), Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gpu")
    (root / "images").mkdir()
    for i in range(16):
        _picture(i, 48, 48).save(root / "images" / f"{i}.png")
    cfg = override(
        TINY,
        data=str(root / "images"),
        out=str(root / "run"),
        precision="bf16",
        device="cuda",
        epochs=2,
        workers=0,
    )
    return train(cfg)


def test_bf16_training_on_cuda_gives_finite_losses(cuda_run):
    records = [json.loads(line) for line in (cuda_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        for key in ("loss", "group_loss", "slot_loss"):
            assert math.isfinite(r[key]), r
    assert (cuda_run / "encoder.pt").is_file()


def test_fp32_encoder_on_cuda_matches_cpu(cuda_run):
    gpu = load_encoder(cuda_run / "encoder.pt", device="cuda", input_size=64)
    cpu = load_encoder(cuda_run / "encoder.pt", device="cpu", input_size=64)
    assert gpu.precision == "fp32"
    for seed in range(4):
        x, info = cpu.preprocess(_picture(100 + seed))
        valid = cpu.valid_mask([info], x.shape[-2:])
        a, b = gpu(x, valid), cpu(x, valid)
        torch.testing.assert_close(a.dots.cpu(), b.dots, atol=1e-4, rtol=0)
        torch.testing.assert_close(a.slots.cpu(), b.slots, atol=1e-4, rtol=1e-4)
    assert torch.backends.cudnn.allow_tf32  # the process-wide default is back


def test_index_of_photos_does_not_depend_on_the_batch_size_on_cuda(photos, tmp_path):
    from test_indexing_build_batching import assert_batch_size_does_not_matter

    # on an H200, 1 pixel of 240,000 moved between batches of 1 and 8 (a near-tie; cuDNN's
    # kernels depend on the batch size, deterministic mode or not): docs/BENCHMARKS.md
    assert_batch_size_does_not_matter(photos[0].parent, tmp_path, "cuda", near_ties=1e-5)


def test_bf16_encoder_on_cuda_agrees_with_cpu(cuda_run):
    gpu = load_encoder(cuda_run / "encoder.pt", device="cuda", input_size=64, precision="bf16")
    cpu = load_encoder(cuda_run / "encoder.pt", device="cpu", input_size=64)
    assert gpu.device.type == "cuda" and cpu.device.type == "cpu"
    for seed in range(4):
        image = _picture(100 + seed)
        x, info = cpu.preprocess(image)
        valid = cpu.valid_mask([info], x.shape[-2:])
        a, b = gpu(x, valid), cpu(x, valid)
        assert a.dots.dtype == torch.float32 and a.dots.device.type == "cuda"
        assert torch.isfinite(a.dots).all()
        torch.testing.assert_close(a.dots.cpu(), b.dots, atol=0.05, rtol=0)
        assignment_gpu = assign_pixels(a.dots[0], info, gpu.stride)[0]
        assignment_cpu = assign_pixels(b.dots[0], info, cpu.stride)[0]
        assert (assignment_gpu == assignment_cpu).mean() >= 0.95
        grouping = gpu.group(image)
        assert grouping.assignment.shape == (72, 96)
        assert grouping.pixels.sum() == 72 * 96
