"""SlotConEncoder: the teacher network for inference (load once, call many times).

The encoder holds its preprocessing, a weight-free model.transforms.ImageTransform (shorter side
to `input_size`, padding to the stride, valid cells, pixel assignment at image resolution);
model.checkpoint.load_encoder builds one from a file.
Inference runs in fp32 unless asked for bf16 (autocast): the paper's scores come from fp32, and
bf16 moves the dots by a few hundredths and some pixels' prototype (docs/FAITHFULNESS.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from model.backbone import build_backbone
from model.config import ModelConfig
from model.grouping import GroupingOutput, SemanticGrouping
from model.heads import Projector
from model.runtimes import Network, network_runtime
from model.transforms import ImageTransform, Preprocessed

PRECISIONS = ("fp32", "bf16")  # inference precision: fp32, or bf16 autocast (faster on GPUs)


class ImageGrouping(NamedTuple):
    """One image's grouping at image resolution."""

    assignment: np.ndarray  # (H, W) int16, prototype index of each pixel
    pixels: np.ndarray  # (K,) int64 pixel count of each prototype
    score: np.ndarray  # (K,) float32 mean dots of the prototype over its pixels, nan if absent
    slots: np.ndarray  # (K, D) float32 slot embeddings (not normalised)


class SlotConEncoder(nn.Module):
    """Images (B, 3, H, W), normalised -> GroupingOutput(slots (B, K, D), dots (B, K, h, w))."""

    def __init__(self, cfg: ModelConfig, input_size: int | None = None, precision: str = "fp32"):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.cfg = cfg
        self.precision = precision  # fp32 | bf16 (autocast on the encoder's device)
        self.backbone = build_backbone(cfg)
        self.projector = Projector(self.backbone.num_channels, cfg.dim_hidden, cfg.dim_out)
        self.grouping = SemanticGrouping(cfg.num_prototypes, cfg.dim_out, cfg.teacher_temp)
        # ResNet-50 models see whole images at 448 px (shorter side); small ones their training size
        default_size = 448 if cfg.arch == "resnet50" else 192
        self.transform = ImageTransform(cfg.output_stride, input_size or default_size)
        self.requires_grad_(False)
        self.eval()
        self.runtime = "eager"  # how the network runs (model.runtimes); use_runtime changes it
        self._network: Network | None = None

    def use_runtime(self, runtime: str) -> SlotConEncoder:
        """Run backbone + projector by `runtime` (model.runtimes.RUNTIMES) from now on; call
        after moving the encoder to its device."""
        network = nn.Sequential(self.backbone, self.projector)
        bf16 = self.precision == "bf16"
        self._network = network_runtime(network, runtime, self.device, bf16)
        self.runtime = runtime
        return self

    @property
    def stride(self) -> int:
        return self.transform.stride

    @property
    def input_size(self) -> int:
        return self.transform.input_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_prototypes(self) -> int:
        return self.cfg.num_prototypes

    @property
    def prototypes(self) -> torch.Tensor:
        """(K, D) L2-normalised prototype vectors."""
        return F.normalize(self.grouping.slot_embed.weight.detach().float(), dim=1)

    def train(self, mode: bool = True) -> SlotConEncoder:
        return super().train(False)  # always eval: BatchNorm uses its running statistics

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H', W') -> the teacher's projected features z (B, D, h, w)
        float32, not normalised, on the encoder's device, at the encoder's precision."""
        images = images.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        bf16 = self.precision == "bf16"
        with _full_fp32(self.device.type == "cuda" and not bf16):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                if self._network is not None:
                    return self._network(images).float()
                return self.projector(self.backbone(images)).float()  # (B, D, h, w)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor, valid: torch.Tensor | None = None) -> GroupingOutput:
        """valid (B, 1, h, w) bool, optional: map cells that are image, not padding."""
        z = self.features(images)  # (B, D, h, w)
        if valid is not None:
            valid = valid.to(z.device)
        out = self.grouping(z, valid)
        return GroupingOutput(slots=out.slots.float(), dots=out.dots.float())

    def preprocess(
        self, image: Image.Image, size: int | None = None
    ) -> tuple[torch.Tensor, Preprocessed]:
        """RGB PIL image -> ((1, 3, H', W') normalised tensor, Preprocessed): the transform's
        apply_image (shorter side to `size`, default `input_size`; padded to the stride)."""
        return self.transform.apply_image(image, size)

    def valid_mask(self, infos: list[Preprocessed], padded_hw: tuple[int, int]) -> torch.Tensor:
        """(B, 1, h, w) bool for a batch padded to `padded_hw` (H', W'): the transform's."""
        return self.transform.valid_mask(infos, padded_hw)

    def group(self, image: Image.Image, size: int | None = None) -> ImageGrouping:
        """One RGB image -> its grouping at image resolution."""
        x, info = self.transform.apply_image(image, size)
        out = self(x, self.transform.valid_mask([info], x.shape[-2:]))
        assignment, pixels, score = self.transform.assign_pixels(out.dots[0], info)
        return ImageGrouping(assignment, pixels, score, out.slots[0].cpu().numpy())


@contextmanager
def _full_fp32(active: bool) -> Iterator[None]:
    """cuDNN convolutions in true fp32, not TF32 (PyTorch's default for them on recent GPUs).
    The flag is process-wide: a concurrent forward may see it switched; both are fp32 or close."""
    if not active:
        yield
        return
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved
