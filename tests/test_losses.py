"""Losses: hand-made embeddings, the math checked, and good embeddings scoring lower than bad."""

import math

import pytest
import torch
import torch.nn.functional as F

from twotowers.losses import InBatchNegativesLoss, TripletLoss, build_loss


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_triplet_math_by_hand():
    q = unit([1, 0], [0, 1])
    p = unit([1, 0], [1, 1])  # d(q0,p0) = 0; d(q1,p1) = 1 - 1/sqrt2
    # no hard negatives: query i's negative is p[i+1]: q0 vs p1 -> d = 1 - 1/sqrt2; q1 vs p0 -> d = 1
    loss = TripletLoss.compute_loss_from_embeddings(q, p, margin=0.5)
    l0 = max(0.0, 0 - (1 - 1 / math.sqrt(2)) + 0.5)
    l1 = max(0.0, (1 - 1 / math.sqrt(2)) - 1 + 0.5)
    assert loss.item() == pytest.approx((l0 + l1) / 2, abs=1e-6)


def test_triplet_uses_each_querys_own_hard_negative():
    q = unit([1, 0], [0, 1])
    p = unit([1, 0], [0, 1])
    n = unit([1, 0.1], [-1, 0], [0, 1])  # q0's first negative is close to q0; q1's is identical to q1
    owner = torch.tensor([0, 0, 1])
    loss = TripletLoss.compute_loss_from_embeddings(q, p, n, owner, margin=0.2)
    d0 = 1 - F.cosine_similarity(q[0], n[0], dim=0).item()
    expected = (max(0, 0 - d0 + 0.2) + max(0, 0 - 0 + 0.2)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_infonce_math_by_hand():
    q = unit([1, 0], [0, 1])
    p = unit([1, 0], [1, 1])
    n = unit([-1, 0])
    scale = 5.0
    loss = InBatchNegativesLoss.compute_loss_from_embeddings(q, p, n, scale)
    scores = scale * q @ torch.cat([p, n]).T
    expected = -(scores[0].log_softmax(0)[0] + scores[1].log_softmax(0)[1]) / 2
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("name", ["triplet", "infonce"])
def test_good_embeddings_have_lower_loss(name):
    torch.manual_seed(0)
    loss_fn = build_loss(name, margin=0.3, scale=20.0)
    q = F.normalize(torch.randn(8, 16), dim=-1)
    good_p = F.normalize(q + 0.05 * torch.randn(8, 16), dim=-1)
    bad_p = F.normalize(torch.randn(8, 16), dim=-1)
    neg = F.normalize(torch.randn(8, 16), dim=-1)
    owner = torch.arange(8)
    assert loss_fn(q, good_p, neg, owner) < loss_fn(q, bad_p, neg, owner)
    # A hard negative equal to the positive makes the loss worse than a random one.
    assert loss_fn(q, good_p, good_p.clone(), owner) > loss_fn(q, good_p, neg, owner)


def test_losses_give_gradients_and_reject_unknown_names():
    q = F.normalize(torch.randn(4, 8), dim=-1).requires_grad_()
    p = F.normalize(torch.randn(4, 8), dim=-1)
    build_loss("infonce")(q, p).backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    with pytest.raises(ValueError):
        build_loss("hinge")
