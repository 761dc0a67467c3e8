"""The REINFORCE gradient estimate against its exact value on a problem small enough to solve."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical

from rlrun.algos.reinforce import policy_gradient_loss
from rlrun.build import build
from tests.conftest import make_config


def test_gradient_estimate_matches_the_exact_policy_gradient_of_a_bandit():
    """One-step problem: J(theta) = sum_a pi_theta(a) r(a), so grad_k J = pi_k (r_k - J) exactly.

    The estimate from M sampled one-step trajectories must fall within 4 standard errors of it
    (the standard error measured from the same samples), component by component.
    """
    torch.manual_seed(0)
    theta = torch.tensor([0.3, -0.2, 0.1], requires_grad=True)
    reward = torch.tensor([1.0, 3.0, -2.0])
    pi = torch.softmax(theta, 0).detach()
    exact = pi * (reward - (pi * reward).sum())

    m = 20_000
    actions = Categorical(logits=theta.detach()).sample((1, m))  # T = 1 step, N = m trajectories
    log_probs = Categorical(logits=theta).log_prob(actions)
    loss = policy_gradient_loss(log_probs, reward[actions], torch.ones(1, m, dtype=torch.bool))
    (minus_grad,) = torch.autograd.grad(loss, theta)
    estimate = -minus_grad

    per_sample = (torch.nn.functional.one_hot(actions[0], 3) - pi) * reward[actions[0]][:, None]
    stderr = per_sample.std(0) / m**0.5
    assert torch.all((estimate - exact).abs() < 4 * stderr), (estimate, exact, stderr)
    assert torch.allclose(per_sample.mean(0), estimate, atol=1e-5)  # the loss is that sample mean


def test_padding_contributes_nothing_to_the_loss():
    log_probs = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]])
    advantages = torch.ones(2, 2)
    valid = torch.tensor([[True, True], [True, False]])
    assert policy_gradient_loss(log_probs, advantages, valid).item() == (1 + 2 + 3) / 2


def test_lr_and_value_lr_anneal_to_zero_over_lr_anneal_steps_and_are_what_adam_uses():
    algo = build(make_config("algo=reinforce", "algo.N=2", "algo.baseline=value", "algo.lr_anneal_steps=256"))
    for step in (0, 64, 192, 256, 320):
        left = max(0.0, 1 - step / 256)
        assert algo.iterate(step)[1]["charts/learning_rate"] == pytest.approx(algo.cfg.lr * left)
        assert algo.optimizer.param_groups[0]["lr"] == pytest.approx(algo.cfg.lr * left)
        assert algo.value_optimizer.param_groups[0]["lr"] == pytest.approx(algo.cfg.value_lr * left)
    constant = build(make_config("algo=reinforce", "algo.N=2", "algo.lr_anneal_steps=null"))
    assert constant.iterate(10_000)[1]["charts/learning_rate"] == constant.cfg.lr
