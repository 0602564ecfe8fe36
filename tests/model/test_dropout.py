"""The CPU dropout: right drop rate, unbiased scale, gradient through the same mask, identity in eval."""

from __future__ import annotations

import torch

from dtkit.model.dropout import Dropout


def test_rate_scale_and_gradient():
    torch.manual_seed(0)
    d = Dropout(0.1).train()
    x = torch.ones(200_000, requires_grad=True)
    y = d(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 26 / 256) < 0.003  # p rounded to a multiple of 1/256
    assert abs(y.mean().item() - 1.0) < 0.01  # kept elements are scaled up: the mean is unbiased
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(y)/dx is the same mask times the same scale


def test_eval_and_zero_probability_are_identity():
    x = torch.randn(10, 4)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_seeded_masks_repeat():
    d = Dropout(0.3).train()
    torch.manual_seed(1)
    a = d(torch.ones(1000))
    torch.manual_seed(1)
    assert torch.equal(a, d(torch.ones(1000)))
