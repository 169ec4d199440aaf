"""SlotConEncoder: the teacher network for inference (load once, call many times).

Whole images keep their aspect ratio: the shorter side is resized to `input_size`, the image is
padded (bottom/right) to a multiple of the stride, and `Preprocessed` says how to crop the
maps back. Assignment maps come from bilinearly upsampled dots, as in the authors' visualisation.
Inference runs in fp32 unless asked for bf16 (autocast): the paper's scores come from fp32, and
bf16 moves the dots by a few hundredths and some pixels' prototype (docs/FAITHFULNESS.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from model.augment import normalize
from model.backbone import build_backbone
from model.checkpoint import CheckpointError, encoder_weights, read_checkpoint
from model.config import ModelConfig
from model.grouping import GroupingOutput, SemanticGrouping
from model.heads import Projector


class Preprocessed(NamedTuple):
    image_size: tuple[int, int]  # (W, H) of the original image
    resized_size: tuple[int, int]  # (W, H) after the resize, before padding
    map_size: tuple[int, int]  # (w, h) of the map cells that cover the encoder's input
    # (left, top) of the encoder's input in the resized image: (0, 0) for the whole image,
    # else a crop (indexing.views); pixels outside it extend the map's border cells
    offset: tuple[int, int] = (0, 0)


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
        self.stride = cfg.output_stride
        # ResNet-50 models see whole images at 448 px (shorter side); small ones their training size
        self.input_size = input_size or (448 if cfg.arch == "resnet50" else 192)
        self.requires_grad_(False)
        self.eval()

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
        """RGB PIL image -> ((1, 3, H', W') normalised tensor, Preprocessed).

        Shorter side to `size` (default `input_size`), aspect ratio kept, longer side capped at
        4 x size; padded with zeros (the mean colour) to a multiple of the stride.
        """
        size = size or self.input_size
        W, H = image.size
        scale = min(size / min(W, H), 4 * size / max(W, H))
        rw, rh = max(1, round(W * scale)), max(1, round(H * scale))
        resized = image.convert("RGB").resize((rw, rh), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float() / 255
        x = normalize(x)
        s = self.stride
        pw, ph = math.ceil(rw / s) * s, math.ceil(rh / s) * s
        x = F.pad(x, (0, pw - rw, 0, ph - rh))
        info = Preprocessed((W, H), (rw, rh), (math.ceil(rw / s), math.ceil(rh / s)))
        return x[None], info

    def valid_mask(self, infos: list[Preprocessed], padded_hw: tuple[int, int]) -> torch.Tensor:
        """(B, 1, h, w) bool for a batch padded to `padded_hw` (H', W'): the map cells that
        cover image pixels rather than padding."""
        h, w = padded_hw[0] // self.stride, padded_hw[1] // self.stride
        mask = torch.zeros(len(infos), 1, h, w, dtype=torch.bool)
        for i, info in enumerate(infos):
            mask[i, :, : info.map_size[1], : info.map_size[0]] = True
        return mask

    def group(self, image: Image.Image, size: int | None = None) -> ImageGrouping:
        """One RGB image -> its grouping at image resolution."""
        x, info = self.preprocess(image, size)
        out = self(x, self.valid_mask([info], x.shape[-2:]))
        assignment, pixels, score = assign_pixels(out.dots[0], info, self.stride)
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


@torch.inference_mode()
def assign_pixels(
    dots: torch.Tensor, info: Preprocessed, stride: int, block_rows: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dots (K, h, w) of one padded image -> assignment (H, W) int16, pixels (K,), score (K,).

    Bilinear upsampling of the valid cells to image resolution (cell centres at the centres of
    their stride x stride patches), argmax over K; done in blocks of rows to bound memory for
    K = 256 on large images. score[k] = mean of dots[k] over the pixels assigned to k.
    pixels and score count the pixels of counted_region(info) only: all of them, unless the
    encoder saw a crop (then the map outside the crop only repeats the crop's border).
    """
    K = dots.shape[0]
    w_map, h_map = info.map_size
    W, H = info.image_size
    cells = dots[None, :, :h_map, :w_map].float()  # (1, K, h, w)
    gx, inside_x = _grid_axis(info, stride, 0)
    gy, inside_y = _grid_axis(info, stride, 1)
    gx = gx.to(cells.device)
    assignment = np.empty((H, W), dtype=np.int16)
    pixels = torch.zeros(K, dtype=torch.float64)
    sums = torch.zeros(K, dtype=torch.float64)
    for top in range(0, H, block_rows):
        rows = min(block_rows, H - top)
        grid = torch.stack(
            torch.meshgrid(gy[top : top + rows].to(cells.device), gx, indexing="ij")[::-1], dim=-1
        )[None]
        up = F.grid_sample(cells, grid, mode="bilinear", padding_mode="border", align_corners=False)
        best, winner = up[0].max(dim=0)  # (rows, W)
        assignment[top : top + rows] = winner.cpu().numpy()
        counted = (inside_y[top : top + rows, None] & inside_x[None, :]).flatten()
        flat = winner.flatten().cpu()[counted]
        pixels += torch.bincount(flat, minlength=K).double()
        best = best.flatten().cpu()[counted].double()
        sums += torch.bincount(flat, weights=best, minlength=K)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (sums / pixels).float().numpy()
    return assignment, pixels.long().numpy(), score


def _grid_axis(info: Preprocessed, stride: int, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Along x (axis 0) or y (1): each image pixel's sampling coordinate in the map, normalised
    for grid_sample (align_corners=False), and whether it lies in the encoder's input."""
    n_out, n_resized = info.image_size[axis], info.resized_size[axis]
    span = info.map_size[axis] * stride  # the input's side in resized pixels, with padding
    resized = (torch.arange(n_out, dtype=torch.float32) + 0.5) * n_resized / n_out
    resized = resized - info.offset[axis]  # in the encoder's input
    return resized / span * 2 - 1, (resized >= 0) & (resized < span)


def counted_region(info: Preprocessed, stride: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), ends exclusive: the image pixels whose centres the encoder saw (the
    whole image unless it saw a crop). assign_pixels counts these only."""
    ends = []
    for axis in (0, 1):
        inside = _grid_axis(info, stride, axis)[1].nonzero().flatten()
        ends.append((int(inside[0]), int(inside[-1]) + 1) if len(inside) else (0, 0))
    (x0, x1), (y0, y1) = ends
    return x0, y0, x1, y1


def load_encoder(
    path: str | Path,
    device: str | torch.device | None = None,
    input_size: int | None = None,
    precision: str = "fp32",
) -> SlotConEncoder:
    """Load this project's checkpoints (training or encoder) or a published full checkpoint.

    The architecture, K and D are read from the file. The device defaults to CUDA when present;
    precision is fp32 or bf16 (autocast), see PRECISIONS.
    Raises CheckpointError for missing, truncated, foreign, malformed or mismatching files;
    the weights' names and shapes are checked before the network is allocated.
    """
    ckpt = read_checkpoint(path)
    cfg, state = encoder_weights(ckpt, Path(path).name)
    check_weights_fit(cfg, state, Path(path).name)
    encoder = SlotConEncoder(cfg, input_size, precision)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{Path(path).name}: weights do not fit the model: {error}"
        ) from error
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return encoder.to(device)


def check_weights_fit(cfg: ModelConfig, state: dict, name: str = "checkpoint") -> None:
    """CheckpointError unless `state` has exactly the names and shapes of an encoder of `cfg`.

    The reference is built on the meta device: no memory, whatever the config claims (a file
    whose config says K = 2**40 beside weights for K = 8 allocates nothing)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SlotConEncoder(cfg).state_dict().items()}
    problems = [f"missing {k}" for k in sorted(expected.keys() - state.keys())]
    problems += [f"unexpected {k}" for k in sorted(state.keys() - expected.keys())]
    problems += [
        f"{k} is {tuple(state[k].shape)} in the file, {shape} for the config"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{name}: weights do not fit the model of its config ({cfg.arch}, K "
            f"{cfg.num_prototypes}, D {cfg.dim_out}): {'; '.join(problems[:3])}{more}"
        )
