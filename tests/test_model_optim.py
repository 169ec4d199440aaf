"""The optimisers and the learning-rate schedule (model/optim.py), directly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from model.optim import LARS, build_optimizer, learning_rate, parameter_groups

PEAK, FLOOR, WARMUP, TOTAL = 0.5, 0.01, 10, 110


def test_warm_up_is_linear_from_a_hundredth_of_the_peak():
    assert learning_rate(0, TOTAL, WARMUP, PEAK, FLOOR) == pytest.approx(PEAK / 100)
    half = learning_rate(WARMUP // 2, TOTAL, WARMUP, PEAK, FLOOR)
    assert half == pytest.approx((PEAK / 100 + PEAK) / 2)
    assert learning_rate(WARMUP, TOTAL, WARMUP, PEAK, FLOOR) == pytest.approx(PEAK)


def test_cosine_decay_from_the_peak_to_the_floor_then_stays():
    rates = [learning_rate(s, TOTAL, WARMUP, PEAK, FLOOR) for s in range(WARMUP, TOTAL + 1)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    middle = learning_rate(WARMUP + (TOTAL - WARMUP) // 2, TOTAL, WARMUP, PEAK, FLOOR)
    assert middle == pytest.approx((PEAK + FLOOR) / 2)
    assert rates[-1] == pytest.approx(FLOOR)
    assert learning_rate(TOTAL + 50, TOTAL, WARMUP, PEAK, FLOOR) == pytest.approx(FLOOR)
    quarter = WARMUP + (TOTAL - WARMUP) // 4
    expected = FLOOR + (PEAK - FLOOR) * 0.5 * (1 + math.cos(math.pi / 4))
    assert learning_rate(quarter, TOTAL, WARMUP, PEAK, FLOOR) == pytest.approx(expected)


def test_without_warm_up_the_schedule_starts_at_the_peak():
    assert learning_rate(0, TOTAL, 0, PEAK, FLOOR) == pytest.approx(PEAK)
    assert learning_rate(0, 0, 0, PEAK, FLOOR) == pytest.approx(PEAK)  # no division by zero


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    net[2].bias.requires_grad_(False)  # frozen: in no group
    return net


def test_parameter_groups_decay_matrices_only_and_skip_frozen_parameters():
    net = _net()
    decay, no_decay = parameter_groups(net, weight_decay=1e-4)
    assert [tuple(p.shape) for p in decay["params"]] == [(3, 4), (2, 3)]
    assert decay["weight_decay"] == 1e-4 and "lars_exclude" not in decay
    assert [tuple(p.shape) for p in no_decay["params"]] == [(3,), (3,), (3,)]
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"] is True


@pytest.mark.parametrize(
    "name, kind", [("lars", LARS), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)]
)
def test_build_optimizer_kinds_and_groups(name, kind):
    optimizer = build_optimizer(name, _net(), lr=0.3, weight_decay=1e-4)
    assert type(optimizer) is kind
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-4, 0.0]
    assert all(g["lr"] == 0.3 for g in optimizer.param_groups)
    if name == "lars":
        assert [g["lars_exclude"] for g in optimizer.param_groups] == [False, True]
    else:
        assert all("lars_exclude" not in g for g in optimizer.param_groups)
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.9


def test_lars_follows_the_formula_for_two_steps():
    """update = g + wd p, scaled by trust = c |p| / |update|; momentum buffer; p -= lr buf.
    Excluded (1-D) parameters: plain SGD with momentum, no decay, no trust ratio."""
    lr, wd, m, c = 0.5, 0.1, 0.9, 0.001
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))
    b = nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = LARS(
        [{"params": [w], "weight_decay": wd}, {"params": [b], "lars_exclude": True}],
        lr=lr,
        momentum=m,
        trust_coefficient=c,
    )
    w_buf, b_buf = torch.zeros_like(w), torch.zeros_like(b)
    for grads in ([[[1.0, 0.0]], [0.5, 0.5]], [[[0.0, 2.0]], [-1.0, 0.0]]):
        gw, gb = torch.tensor(grads[0]), torch.tensor(grads[1])
        w_before, b_before = w.detach().clone(), b.detach().clone()
        update = gw + wd * w_before
        w_buf = m * w_buf + update * (c * w_before.norm() / update.norm())
        b_buf = m * b_buf + gb
        w.grad, b.grad = gw, gb
        optimizer.step()
        torch.testing.assert_close(w.detach(), w_before - lr * w_buf)
        torch.testing.assert_close(b.detach(), b_before - lr * b_buf)


def test_lars_trust_ratio_is_one_for_a_zero_parameter_and_skips_missing_gradients():
    zero = nn.Parameter(torch.zeros(2, 2))
    untouched = nn.Parameter(torch.ones(2, 2))
    optimizer = LARS([zero, untouched], lr=0.1, momentum=0.0)
    zero.grad = torch.ones(2, 2)
    optimizer.step()
    torch.testing.assert_close(zero.detach(), torch.full((2, 2), -0.1))
    torch.testing.assert_close(untouched.detach(), torch.ones(2, 2))
    assert untouched not in optimizer.state
