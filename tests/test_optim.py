"""The learning-rate schedule every objective trains under: linear warm-up, cosine to 0, following a plan
that `--max-seconds` may shrink mid-run; and which parameters go to which optimizer."""

import math

import pytest
import torch
from torch import nn

from train.optim import Optimizers, lr_factor


def test_warm_up_is_linear_then_cosine_decays_to_zero():
    total, warmup = 100, 10  # warmup_ratio 0.1
    assert [lr_factor(s, total, 0.1) for s in range(warmup)] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert lr_factor(warmup, total, 0.1) == pytest.approx(1.0)  # the peak right after warm-up
    assert lr_factor(warmup + 45, total, 0.1) == pytest.approx(0.5)  # half way down the cosine
    assert lr_factor(total, total, 0.1) == pytest.approx(0.0, abs=1e-12) == lr_factor(total + 5, total, 0.1)
    decay = [lr_factor(s, total, 0.1) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_no_warm_up_starts_at_the_peak_and_a_tiny_run_still_warms_up():
    assert lr_factor(0, 50, 0.0) == 1.0
    # a 3-step run at 5% warm-up: one step of it (never zero), then the cosine over the other two
    assert [lr_factor(s, 3, 0.05) for s in range(4)] == pytest.approx([1.0, 1.0, 0.5, 0.0])


def model_with_a_big_table() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(2000, 512), nn.Linear(512, 4))  # a 1M-parameter table: a sparse one


def test_the_schedule_follows_a_plan_shrunk_mid_run():
    model = model_with_a_big_table()
    opt = Optimizers(model, [], lr=1e-2, embedding_lr=None, weight_decay=0.0, warmup_ratio=0.0, total_steps=100,
                     sparse=False)
    lrs = []
    for step in range(10):
        lrs.append(opt.lr())
        model(torch.tensor([[step]])).sum().backward()
        opt.step(1.0)
        opt.zero_grad()
        if step == 4:
            opt.plan["total"] = 10  # `--max-seconds`: only 10 steps fit
    assert lrs[0] == pytest.approx(1e-2)
    # the step after the change was scheduled before it; from the next on, the new plan's curve
    assert lrs[5] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 5 / 100)))
    assert lrs[6:] == pytest.approx([1e-2 * 0.5 * (1 + math.cos(math.pi * s / 10)) for s in range(6, 10)])
    assert opt.lr() == pytest.approx(0.0, abs=1e-12)  # annealed by the end of the shrunk plan
    assert opt.state_dict()["plan"] == {"total": 10}  # what a checkpoint keeps, so a resume follows it too


def test_big_tables_go_sparse_the_rest_dense_and_decay_spares_biases():
    model = model_with_a_big_table()
    extra = nn.Parameter(torch.zeros(3))  # an objective's own parameter (a bias-like vector)
    opt = Optimizers(model, [extra], lr=1e-3, embedding_lr=5e-3, weight_decay=0.01, warmup_ratio=0.0, total_steps=10,
                     sparse=True)
    table, linear = model[0], model[1]
    assert opt.sparse_tables == [table] and table.sparse
    dense, sparse = opt.optimizers
    decay, no_decay = dense.param_groups
    assert [id(p) for p in decay["params"]] == [id(linear.weight)] and decay["weight_decay"] == 0.01
    assert {id(p) for p in no_decay["params"]} == {id(linear.bias), id(extra)} and no_decay["weight_decay"] == 0.0
    assert isinstance(sparse, torch.optim.SparseAdam) and sparse.param_groups[0]["lr"] == 5e-3
    opt.release()
    assert not table.sparse  # a saved model, or training elsewhere, gets dense gradients again
