"""CEM finds the maximisers of known functions, batched over states, within its bounds."""

from __future__ import annotations

import torch

from rlrun import cem

TOLERANCE = 0.02  # on actions in a box of half-width 1-2, with 64 samples, 6 elites, 6 rounds


def quadratic(centres: torch.Tensor):
    """f(a) = -|a - c|^2, one centre per state: [B, M, A] -> [B, M]."""
    return lambda actions: -((actions - centres.unsqueeze(1)) ** 2).sum(-1)


def search(f, batch, low, high, **kw):
    settings = {"iterations": 6, "samples": 64, "elites": 6, "init_std": 1.0, "generator": torch.Generator().manual_seed(0)}
    return cem.maximize(f, batch, torch.tensor(low), torch.tensor(high), **{**settings, **kw})


def test_peak_inside_the_bounds_is_found():
    centre = torch.tensor([[0.3, -0.5]])
    result = search(quadratic(centre), 1, [-1.0, -1.0], [1.0, 1.0])
    assert torch.allclose(result.actions, centre, atol=TOLERANCE)
    assert result.values.item() >= -(TOLERANCE**2) * 2


def test_peak_beyond_a_bound_is_found_at_the_bound_and_never_outside():
    centre = torch.tensor([[3.0, 0.5]])  # the first coordinate's peak is outside [-2, 2]
    result = search(quadratic(centre), 1, [-2.0, -1.0], [2.0, 1.0])
    assert result.actions[0, 0].item() == 2.0  # samples are clipped to the box, so the bound itself is tried
    assert abs(result.actions[0, 1].item() - 0.5) < TOLERANCE


def test_a_batch_of_different_quadratics_each_gets_its_own_maximiser():
    centres = torch.rand(32, 1, generator=torch.Generator().manual_seed(1)) * 3.6 - 1.8
    result = search(quadratic(centres), 32, [-2.0], [2.0])
    assert result.actions.shape == (32, 1) and result.values.shape == (32,)
    assert (result.actions - centres).abs().max().item() < TOLERANCE
    assert (result.elite_std < 0.1).all()  # the elites have converged around each peak


def test_f_is_called_once_per_round_with_every_state_and_sample_at_once():
    shapes = []

    def f(actions):
        shapes.append(tuple(actions.shape))
        return -actions.pow(2).sum(-1)

    result = search(f, 5, [-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], iterations=3, samples=16, elites=4)
    assert shapes == [(5, 16, 3)] * 3
    assert ((result.actions >= -1) & (result.actions <= 1)).all()


def test_the_best_action_is_the_best_sample_seen_not_the_last_mean():
    """With one round the answer must be one of the samples, and the best of them."""
    seen = []

    def f(actions):
        seen.append(actions)
        return -(actions - 0.7).abs().sum(-1)

    result = search(f, 1, [-1.0], [1.0], iterations=1, samples=8, elites=2)
    values = f(seen[0])
    assert torch.equal(result.actions[0], seen[0][0, values[0].argmax()])
