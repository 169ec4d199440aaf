"""How long the index build will take on this machine: a quick measured rate, then the sum.

The probe groups a few batches of the collection's own images with the loaded encoder at the
build's input size (decoding, preprocessing, the forward pass and the image-resolution maps,
as the build does, in one process), after one warm-up image. It is an estimate: the build
decodes in worker processes and writes tables on top, and a shared machine may be slower.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import torch

from model.data import UnreadableImage, load_rgb
from model.encoder import SlotConEncoder

GPU_SUGGESTED_ABOVE_S = 3600.0  # suggest a GPU when the estimate is over an hour


class Estimate(NamedTuple):
    images_per_s: float  # measured rate of the probe
    probed: int  # images timed
    seconds: float  # expected build time of the whole collection

    def describe(self, total: int, device: str) -> str:
        """Two lines: the measurement and the expected time, with a GPU hint above an hour."""
        text = (
            f"measured {self.images_per_s:.2f} images/s on {device} ({self.probed} images); "
            f"expected build time for {total:,} images: about {_duration(self.seconds)}"
        )
        if self.seconds > GPU_SUGGESTED_ABOVE_S and device == "cpu":
            text += (
                "\nthat is over an hour: on a machine with a CUDA GPU the same command uses it "
                "(--device cuda), and many GPUs build in parallel under torchrun (README); on "
                "this CPU, --runtime openvino (pip install openvino) is about twice as fast and "
                "moves a few pixels in a million (docs/BENCHMARKS.md)"
            )
        return text


@torch.inference_mode()
def measure(
    encoder: SlotConEncoder, paths: list[Path], total: int, batches: int = 2, batch_size: int = 8
) -> Estimate:
    """Time `batches` x `batch_size` images of `paths` (after one warm-up image) and
    extrapolate to `total` images. Unreadable images are skipped."""
    sample = paths[: 1 + batches * batch_size]
    if not sample:
        raise ValueError("no images to measure the build rate on")
    _group(encoder, sample[:1])  # warm-up: first-call allocations are not the steady rate
    timed = sample[1:] or sample
    started = time.perf_counter()
    done = _group(encoder, timed)
    seconds = max(time.perf_counter() - started, 1e-6)
    rate = max(done, 1) / seconds
    return Estimate(rate, done, total / rate)


def _group(encoder: SlotConEncoder, paths: list[Path]) -> int:
    done = 0
    for path in paths:
        try:
            encoder.group(load_rgb(path))
        except UnreadableImage:
            continue
        done += 1
    return done


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
