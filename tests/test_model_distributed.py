"""Collectives without a process group; the slot loss and the Sinkhorn targets over two gloo
processes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from model import distributed
from model.losses import present_prototypes, sinkhorn_targets, slot_loss

torch.set_num_threads(1)
B, K, D, TEMP = 4, 5, 6, 0.2  # the global batch: 2 images per rank


def _global_batch():
    """Fixed slots and dots; rank 0's images hold many present prototypes, rank 1's few."""
    g = torch.Generator().manual_seed(0)
    slots_q = torch.randn(B, K, D, generator=g, dtype=torch.float64)
    slots_k = torch.randn(B, K, D, generator=g, dtype=torch.float64)
    h = w = 3
    winners_q = [[0, 1, 2, 3, 4, 0, 1, 2, 3], [4, 3, 2, 1, 0, 0, 0, 0, 0], [2] * 9, [1] * 8 + [3]]
    winners_k = [[0, 1, 2, 3, 4, 4, 4, 4, 4], [0, 1, 2, 3, 4, 1, 1, 1, 1], [2] * 9, [0] * 9]
    dots = []
    for winners in (winners_q, winners_k):
        d = torch.rand(B, K, h, w, generator=g, dtype=torch.float64) * 0.5
        for b, pixels in enumerate(winners):
            for p, k in enumerate(pixels):
                d[b, k, p // w, p % w] = 1.0
        dots.append(d)
    return slots_q, slots_k, dots[0], dots[1]


def _queries_per_rank() -> torch.Tensor:
    _, _, dots_q, dots_k = _global_batch()
    both = present_prototypes(dots_q) & present_prototypes(dots_k)  # (B, K)
    return both.view(2, -1).sum(dim=1).double()


def _worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    try:
        share = slice(rank * B // world, (rank + 1) * B // world)
        slots_q, slots_k, dots_q, dots_k = (t[share] for t in _global_batch())
        loss = slot_loss(slots_q, slots_k, dots_q, dots_k, lambda x: x, TEMP)
        mean = distributed.all_reduce_mean(loss.detach())
        gathered = distributed.all_gather(torch.tensor([float(rank)]))
        result = [loss.item(), mean.item(), distributed.rank(), distributed.world_size()]
        Path(tmp, f"rank{rank}.json").write_text(json.dumps(result + [gathered.tolist()]))
    finally:
        dist.destroy_process_group()


def test_collectives_are_no_ops_without_a_process_group():
    assert not distributed.is_distributed()
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.is_main_process()
    x = torch.randn(3, 2)
    assert distributed.all_gather(x) is x
    assert torch.equal(distributed.all_reduce_sum(x), x)
    assert torch.equal(distributed.all_reduce_mean(x), x)
    distributed.barrier()
    distributed.cleanup()
    assert distributed.init_from_environment().type in ("cpu", "cuda")
    assert not distributed.is_distributed()


def test_presence_is_uneven_across_ranks():
    """The case below only tests the count weighting if the ranks hold different query counts."""
    per_rank = _queries_per_rank()
    assert per_rank[0] != per_rank[1] and per_rank.min() > 0


def test_slot_loss_over_two_processes_equals_one_process(tmp_path):
    single = slot_loss(*_global_batch(), lambda x: x, TEMP).item()
    # fork: the children need not import torch again (seconds on a busy machine)
    mp.start_processes(_worker, args=(2, str(tmp_path)), nprocs=2, start_method="fork")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    (loss0, mean0, rank0, world0, gathered0), (loss1, mean1, *_) = results
    assert (rank0, world0) == (0, 2) and gathered0 == [0.0, 1.0]
    assert mean0 == mean1
    assert abs(mean0 - single) < 1e-5, (mean0, single)
    # each rank's own loss differs from the global one (the count weighting is needed)
    assert abs(loss0 - single) > 1e-3 and abs(loss1 - single) > 1e-3
    # a plain mean of per-rank means (each normalised by its own count) would not match
    counts = _queries_per_rank()
    local_means = [loss0 * counts.sum() / (2 * counts[0]), loss1 * counts.sum() / (2 * counts[1])]
    naive = float(sum(local_means) / 2)
    assert abs(naive - single) > 1e-3


def _sinkhorn_worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    try:
        _, _, _, dots_k = _global_batch()
        share = slice(rank * B // world, (rank + 1) * B // world)
        targets = sinkhorn_targets(dots_k[share], teacher_temp=0.1)
        torch.save(targets, Path(tmp, f"targets{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_sinkhorn_targets_over_two_processes_equal_one_process(tmp_path):
    """The equipartition is over the global batch: each rank's targets are its rows of the
    single-process result, not a rebalancing of its own pixels alone."""
    _, _, _, dots_k = _global_batch()
    single = sinkhorn_targets(dots_k, teacher_temp=0.1)
    mp.start_processes(_sinkhorn_worker, args=(2, str(tmp_path)), nprocs=2, start_method="fork")
    parts = [torch.load(tmp_path / f"targets{r}.pt") for r in range(2)]
    torch.testing.assert_close(torch.cat(parts), single, rtol=1e-6, atol=1e-9)
    local = sinkhorn_targets(dots_k[: B // 2], teacher_temp=0.1)
    assert (local - parts[0]).abs().max() > 1e-3  # rank 0 alone would balance differently
