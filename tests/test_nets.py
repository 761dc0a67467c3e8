"""The policy distributions against torch.distributions, and their samplers against their probabilities."""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Independent, Normal

from rlrun.nets import Categorical, DiagonalGaussian


def test_categorical_log_prob_and_entropy_match_torch():
    logits = torch.randn(5, 7, 3) * 4
    ours, theirs = Categorical(logits), TorchCategorical(logits=logits)
    actions = theirs.sample()
    torch.testing.assert_close(ours.log_prob(actions), theirs.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), theirs.entropy())


def test_categorical_entropy_stays_finite_when_a_probability_underflows_to_zero():
    entropy = Categorical(torch.tensor([[0.0, -1e4, 5.0]])).entropy()
    assert torch.isfinite(entropy).all() and entropy.item() >= 0


def test_gumbel_max_samples_follow_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0])
    n = 40_000
    samples = Categorical(logits.expand(n, 4)).sample()
    frequencies = torch.bincount(samples, minlength=4) / n
    p = logits.softmax(-1)
    standard_errors = (p * (1 - p) / n).sqrt()
    assert ((frequencies - p).abs() < 4 * standard_errors).all()


def test_diagonal_gaussian_matches_torch():
    mean, log_std = torch.randn(6, 2), torch.tensor([-0.5, 0.3])
    ours, theirs = DiagonalGaussian(mean, log_std), Independent(Normal(mean, log_std.exp()), 1)
    actions = theirs.sample()
    torch.testing.assert_close(ours.log_prob(actions), theirs.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), theirs.entropy())


def test_diagonal_gaussian_samples_have_its_mean_and_std():
    torch.manual_seed(0)
    n, mean, log_std = 40_000, torch.tensor([1.0, -2.0]), torch.tensor([0.0, math.log(0.5)])
    samples = DiagonalGaussian(mean.expand(n, 2), log_std).sample()
    std = log_std.exp()
    assert ((samples.mean(0) - mean).abs() < 4 * std / math.sqrt(n)).all()
    assert ((samples.std(0) - std).abs() < 0.02 * std).all()
