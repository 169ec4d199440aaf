"""The SlotCon module: student (q) and EMA teacher (k), centering, group and slot losses.

Parameter names follow the published checkpoints (encoder_q, projector_q, grouping_q,
predictor_slot, center, and the *_k teacher copies), so those load with strict key checking.
The EMA momentum schedule lives in the trainer; `update_teacher` takes the momentum.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from model import distributed
from model.backbone import build_backbone
from model.config import ModelConfig
from model.grouping import SemanticGrouping
from model.heads import Predictor, Projector
from model.losses import group_loss, invert_augmentation, region_loss, slot_loss


class SlotConLosses(NamedTuple):
    loss: torch.Tensor  # total, to back-propagate
    group: torch.Tensor  # G(q1, k2) + G(q2, k1)
    slot: torch.Tensor  # S(q1, k2) + S(q2, k1)
    region: torch.Tensor | None = None  # the local views' region InfoNCE, when it is on


def teacher_momentum(step: int, total_steps: int, base: float) -> float:
    """Cosine schedule m = 1 - (1 - m0) (cos(pi t / T) + 1) / 2, from m0 at t=0 to 1 at t=T."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / max(total_steps, 1)) + 1) / 2


class SlotCon(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        K, D, hidden = cfg.num_prototypes, cfg.dim_out, cfg.dim_hidden
        self.encoder_q = build_backbone(cfg)
        self.encoder_k = build_backbone(cfg)
        C = self.encoder_q.num_channels
        self.projector_q = Projector(C, hidden, D)
        self.projector_k = Projector(C, hidden, D)
        self.grouping_q = SemanticGrouping(K, D, cfg.teacher_temp)
        self.grouping_k = SemanticGrouping(K, D, cfg.teacher_temp)
        self.predictor_slot = Predictor(D, hidden, D)
        self.register_buffer("center", torch.zeros(1, K))
        for student, teacher in self._pairs():
            teacher.load_state_dict(student.state_dict())
            teacher.requires_grad_(False)

    def _pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [
            (self.encoder_q, self.encoder_k),
            (self.projector_q, self.projector_k),
            (self.grouping_q, self.grouping_k),
        ]

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher = m * teacher + (1 - m) * student, for parameters only.

        As the authors do: the teacher's BatchNorm running statistics come from its own forward
        passes (train mode), never from the student's."""
        for student, teacher in self._pairs():
            for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
                pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)

    @torch.no_grad()
    def update_center(self, teacher_dots: torch.Tensor) -> None:
        """EMA of the teacher's mean dots over all pixels of all views on all processes."""
        K = teacher_dots.shape[1]
        flat = teacher_dots.permute(0, 2, 3, 1).reshape(-1, K).float()  # (pixels, K)
        total = distributed.all_reduce_sum(flat.sum(dim=0, keepdim=True))
        count = distributed.all_reduce_sum(torch.tensor(float(flat.shape[0]), device=flat.device))
        m = self.cfg.center_momentum
        self.center.mul_(m).add_(total / count, alpha=1 - m)

    def _student(self, x: torch.Tensor):
        return self.grouping_q(self.projector_q(self.encoder_q(x)))

    @torch.no_grad()
    def _teacher_map(self, x: torch.Tensor):
        """The teacher's projected map z (B, D, h, w) and its grouping."""
        z = self.projector_k(self.encoder_k(x))
        return z, self.grouping_k(z)

    def _local_losses(self, teacher, teacher_flips, views, boxes, flips):
        """Local views (B, n, 3, s, s) against the teacher's maps `teacher` ((z1, k1), (z2, k2))
        of their parent views (view 1 for even j, view 2 for odd j), resampled over each local
        crop. Returns (the sum over the n local views of the group loss, the region InfoNCE or
        None when its weight is 0).

        A local view shows an object with little of its surroundings, while the teacher's map
        came from a view with more: the student must predict the teacher's grouping from the
        object itself (multi-crop, DINO's local-to-global idea, applied to the dense loss)."""
        B, n = views.shape[:2]
        z = self.projector_q(self.encoder_q(views.flatten(0, 1)))  # (B*n, D, h, w)
        dots = self.grouping_q(z).dots  # (B*n, K, h, w)
        h, w = dots.shape[-2:]
        whole = torch.tensor([0.0, 0.0, 1.0, 1.0], device=dots.device).expand(B, 4)
        cfg, group = self.cfg, dots.new_zeros(())
        temps = (cfg.student_temp, cfg.teacher_temp, cfg.teacher_balance)
        q = dots.view(B, n, *dots.shape[1:])
        keys = []
        for j in range(n):
            parent = j % 2
            z_k, k = teacher[parent]
            aligned_q = invert_augmentation(q[:, j], whole, flips[:, j])
            aligned_k = invert_augmentation(k.dots, boxes[:, j], teacher_flips[parent], (h, w))
            group = group + group_loss(aligned_q, aligned_k, self.center, *temps)
            if cfg.local_contrast_weight:
                region = invert_augmentation(z_k, boxes[:, j], teacher_flips[parent], (h, w))
                keys.append(region.mean(dim=(2, 3)))  # (B, D)
        if not cfg.local_contrast_weight:
            return group, None
        queries = z.mean(dim=(2, 3))  # (B*n, D), image b's local j at row b * n + j
        keys = torch.stack(keys, dim=1).flatten(0, 1)  # (B*n, D), the same order
        return group, region_loss(queries, keys, self.predictor_slot, cfg.slot_temp)

    def forward(
        self,
        view1: torch.Tensor,
        view2: torch.Tensor,
        coords1: torch.Tensor,
        coords2: torch.Tensor,
        flip1: torch.Tensor,
        flip2: torch.Tensor,
        local_views: torch.Tensor | None = None,
        local_boxes: torch.Tensor | None = None,
        local_flips: torch.Tensor | None = None,
    ) -> SlotConLosses:
        """Views (B, 3, S, S) normalised; coords (B, 4) overlap boxes (XYXY in [0, 1]) in each
        view's own coordinates; flip (B,) bool. Optional local views as model.tensor_views'
        ManyViews gives them. Updates the center; not the teacher."""
        cfg = self.cfg
        q1, q2 = self._student(view1), self._student(view2)
        (z1, k1), (z2, k2) = self._teacher_map(view1), self._teacher_map(view2)

        aligned_q1 = invert_augmentation(q1.dots, coords1, flip1)
        aligned_q2 = invert_augmentation(q2.dots, coords2, flip2)
        aligned_k1 = invert_augmentation(k1.dots, coords1, flip1)
        aligned_k2 = invert_augmentation(k2.dots, coords2, flip2)
        temps = (cfg.student_temp, cfg.teacher_temp, cfg.teacher_balance)
        group = group_loss(aligned_q1, aligned_k2, self.center, *temps) + group_loss(
            aligned_q2, aligned_k1, self.center, *temps
        )
        region = None
        if local_views is not None:
            n = local_views.shape[1]
            local, region = self._local_losses(
                ((z1, k1), (z2, k2)), (flip1, flip2), local_views, local_boxes, local_flips
            )
            group = (group + local) * 2 / (2 + n)  # the mean over all pairs, at the two-view scale
        slot = slot_loss(
            q1.slots, k2.slots, q1.dots, k2.dots, self.predictor_slot, cfg.slot_temp
        ) + slot_loss(q2.slots, k1.slots, q2.dots, k1.dots, self.predictor_slot, cfg.slot_temp)
        self.update_center(torch.cat([k1.dots, k2.dots]))
        w = cfg.group_loss_weight
        loss = w * group + (1 - w) * slot
        if region is not None:
            loss = loss + cfg.local_contrast_weight * region
        return SlotConLosses(loss=loss, group=group, slot=slot, region=region)
