"""Semantic grouping: soft assignment of every pixel feature to K learnable prototypes."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class GroupingOutput(NamedTuple):
    slots: torch.Tensor  # (B, K, D) attention-weighted means of the unnormalised features
    dots: torch.Tensor  # (B, K, h, w) cosine similarity of each pixel feature to each prototype


class SemanticGrouping(nn.Module):
    """Projected map z (B, D, h, w) -> slots (B, K, D) and dots (B, K, h, w).

    dots[k, i, j] = cos(P_k, z_ij); attn = softmax_k(dots / temp) + eps;
    slot_k = sum_ij attn[k, i, j] z_ij / sum_ij attn[k, i, j].
    """

    def __init__(self, num_prototypes: int, dim: int, temp: float = 0.07, eps: float = 1e-6):
        super().__init__()
        self.num_prototypes, self.temp, self.eps = num_prototypes, temp, eps
        self.slot_embed = nn.Embedding(num_prototypes, dim)  # the prototypes P (K, D)

    def forward(self, z: torch.Tensor, valid: torch.Tensor | None = None) -> GroupingOutput:
        """valid (B, 1, h, w) bool, optional: pool slots over these pixels only (padding)."""
        prototypes = F.normalize(self.slot_embed.weight, dim=1)  # (K, D)
        dots = torch.einsum("kd,bdhw->bkhw", prototypes, F.normalize(z, dim=1))  # (B, K, h, w)
        attn = (dots / self.temp).softmax(dim=1) + self.eps  # (B, K, h, w)
        if valid is not None:
            attn = attn * valid
        weights = attn / attn.sum(dim=(2, 3), keepdim=True)
        slots = torch.einsum("bdhw,bkhw->bkd", z, weights)  # (B, K, D)
        return GroupingOutput(slots=slots, dots=dots)
