"""SlotCon's two losses and the inverse augmentation that aligns the two views' maps.

Coordinates are normalised XYXY boxes in [0, 1] of the view they belong to.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from model import distributed


def invert_augmentation(
    dots: torch.Tensor,
    coords: torch.Tensor,
    flipped: torch.Tensor,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Resample each view's map over the two views' overlap and undo its flip.

    dots (B, K, h, w); coords (B, 4) float, the overlap box in this view's normalised XYXY
    coordinates (already mirrored when the view was flipped); flipped (B,) bool.
    Returns (B, K, h, w), or (B, K, *size) when given: position (i, j) of view 1's result and of
    view 2's result show the same image location.
    """
    B, _, h, w = dots.shape
    scale = torch.tensor([w, h, w, h], dtype=dots.dtype, device=dots.device)
    boxes = torch.cat(
        [torch.arange(B, device=dots.device, dtype=dots.dtype)[:, None], coords.to(dots) * scale],
        dim=1,
    )  # (B, 5): batch index, x1, y1, x2, y2 in map pixels
    aligned = roi_align(dots, boxes, output_size=size or (h, w), spatial_scale=1.0, aligned=True)
    return torch.where(flipped.view(B, 1, 1, 1).to(dots.device), aligned.flip(-1), aligned)


def group_loss(
    dots_q: torch.Tensor,
    dots_k: torch.Tensor,
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
    balance: str = "center",
) -> torch.Tensor:
    """Pixel-wise self-distillation: mean over pixels of CE(target, softmax(q/ts)), the target
    softmax((k - c)/tt) (the paper's centering) or, with balance "sinkhorn", the teacher's
    assignments rebalanced over the batch (`sinkhorn_targets`).

    dots_q (B, K, h, w) student, dots_k (B, K, h, w) teacher, both aligned; center (1, K).
    """
    K = dots_q.shape[1]
    q = dots_q.permute(0, 2, 3, 1).reshape(-1, K)  # (B*h*w, K)
    log_p = F.log_softmax(q / student_temp, dim=-1)
    if balance == "sinkhorn":
        target = sinkhorn_targets(dots_k, teacher_temp)
    else:
        k = dots_k.permute(0, 2, 3, 1).reshape(-1, K)
        target = F.softmax((k - center) / teacher_temp, dim=-1)
    return torch.sum(-target * log_p, dim=-1).mean()


@torch.no_grad()
def sinkhorn_targets(
    dots_k: torch.Tensor, teacher_temp: float, iterations: int = 3
) -> torch.Tensor:
    """SwAV's equipartition of the teacher's assignments: (B, K, h, w) dots -> (B*h*w, K) targets
    whose rows sum to 1 and whose columns share the batch's pixels (all processes) about equally.

    Centering only keeps one prototype from winning everywhere; on the built-in scenes it left
    most prototypes unused (docs/DEMO_MODEL.md). Dots are cosines (<= 1), so exp((k - 1) / tt)
    cannot overflow.
    """
    K = dots_k.shape[1]
    k = dots_k.permute(0, 2, 3, 1).reshape(-1, K).float()
    Q = torch.exp((k - 1.0) / teacher_temp).T  # (K, N)
    N = distributed.all_reduce_sum(torch.tensor(float(Q.shape[1]), device=Q.device))
    Q /= distributed.all_reduce_sum(Q.sum())
    for _ in range(iterations):
        Q /= distributed.all_reduce_sum(Q.sum(dim=1, keepdim=True)).clamp_min(1e-30) * K
        Q /= Q.sum(dim=0, keepdim=True).clamp_min(1e-30) * N
    return (Q * N).T.to(dots_k.dtype)


def present_prototypes(dots: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) -> (B, K) bool: prototype k is the argmax of at least one pixel."""
    B, K = dots.shape[:2]
    winners = dots.argmax(dim=1).flatten(1)  # (B, h*w)
    present = torch.zeros(B, K, dtype=torch.bool, device=dots.device)
    return present.scatter_(1, winners, True)


def slot_loss(
    slots_q: torch.Tensor,
    slots_k: torch.Tensor,
    dots_q: torch.Tensor,
    dots_k: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    temp: float,
) -> torch.Tensor:
    """InfoNCE between slots of two views, keys gathered from all processes.

    slots_q (B, K, D) student slots of view a; slots_k (B, K, D) teacher slots of view b;
    dots_q, dots_k (B, K, h, w) the same views' (unaligned) dots, used for presence only.
    Queries: prototypes present in both views; keys: prototypes present in view b, over the
    global batch; the positive of a query is the key of the same (image, prototype).

    Scaled so that the mean over processes (what data-parallel gradient averaging computes)
    equals the mean over all queries of the global batch, whatever each process holds.
    """
    B, K, _ = slots_q.shape
    present_q = present_prototypes(dots_q).flatten()  # (B*K,)
    present_k = present_prototypes(dots_k).flatten()  # (B*K,)
    idx_q = (present_q & present_k).nonzero().squeeze(1)
    all_present_k = distributed.all_gather(present_k)  # (world*B*K,)
    keys = F.normalize(distributed.all_gather(slots_k.flatten(0, 1).detach()), dim=1)
    keys = keys[all_present_k]  # (M, D)
    queries = F.normalize(predictor(slots_q.flatten(0, 1)[idx_q]), dim=1)  # (Nq, D)
    # position of each query's positive among the kept keys
    offset = distributed.rank() * B * K
    labels = all_present_k.long().cumsum(0)[idx_q + offset] - 1
    logits = queries @ keys.T / temp  # (Nq, M)
    total = F.cross_entropy(logits, labels, reduction="sum")
    count = distributed.all_reduce_sum(torch.tensor(float(len(idx_q)), device=logits.device))
    return total * distributed.world_size() / count.clamp(min=1) * (2 * temp)


def region_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    temp: float,
) -> torch.Tensor:
    """InfoNCE between N student region embeddings (N, D) and the teacher's embeddings (N, D) of
    the same regions: query i's positive is key i, every other key of the global batch a negative.
    Scaled like `slot_loss` (mean over the global batch's queries, times 2 * temp)."""
    N = queries.shape[0]
    keys = F.normalize(distributed.all_gather(keys.detach()), dim=1)  # (world * N, D)
    q = F.normalize(predictor(queries), dim=1)
    labels = torch.arange(N, device=q.device) + distributed.rank() * N
    return F.cross_entropy(q @ keys.T / temp, labels) * (2 * temp)
