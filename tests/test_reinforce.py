"""The REINFORCE gradient estimate against its exact value on a problem small enough to solve."""

from __future__ import annotations

import torch
from torch.distributions import Categorical

from rlrun.algos.reinforce import policy_gradient_loss


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
