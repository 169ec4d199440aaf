"""Projector (dense, 1x1 convolutions) and predictor (on slots) of SlotCon.

Both are three-layer MLPs whose parameterised entries sit at Sequential indices 0, 1, 3, 4, 6
(layer, BatchNorm, GELU, layer, BatchNorm, GELU, layer), the layout of the published checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class Projector(nn.Module):
    """Feature map (B, C, h, w) -> projected map (B, D, h, w)."""

    def __init__(self, dim_in: int, dim_hidden: int, dim_out: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(dim_in, dim_hidden, 1),
            nn.BatchNorm2d(dim_hidden),
            nn.GELU(),
            nn.Conv2d(dim_hidden, dim_hidden, 1),
            nn.BatchNorm2d(dim_hidden),
            nn.GELU(),
            nn.Conv2d(dim_hidden, dim_out, 1),
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class Predictor(nn.Module):
    """Slot embeddings (N, D) -> predictions (N, D); student only."""

    def __init__(self, dim_in: int, dim_hidden: int, dim_out: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim_in, dim_hidden),
            nn.BatchNorm1d(dim_hidden),
            nn.GELU(),
            nn.Linear(dim_hidden, dim_hidden),
            nn.BatchNorm1d(dim_hidden),
            nn.GELU(),
            nn.Linear(dim_hidden, dim_out),
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)
