"""The cross-entropy method: argmax_a f(s, a) over a box of actions, for a batch of states at once.

Each iteration draws `samples` actions per state from a diagonal Gaussian (clipped to the box),
keeps the `elites` best by f, and refits the Gaussian's mean and std to them. All states and
samples go through f as one tensor; the only Python loop is over the few iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class CEMResult:
    actions: torch.Tensor  # [B, A] the best action found for each state
    values: torch.Tensor  # [B] f at that action
    elite_std: torch.Tensor  # [B, A] spread of the last iteration's elites (small: converged)


def maximize(
    f: Callable[[torch.Tensor], torch.Tensor],
    batch: int,
    low: torch.Tensor,
    high: torch.Tensor,
    iterations: int,
    samples: int,
    elites: int,
    init_std: float,
    generator: torch.Generator | None = None,
) -> CEMResult:
    """Maximise `f`, which maps actions [B, samples, A] to values [B, samples], over [low, high]^A.

    The search starts at the box's centre with std `init_std` times its half-width, so
    init_std = 1 spreads the first samples over the whole box whatever its units.
    """
    half_width = (high - low) / 2
    mean = (low + half_width).expand(batch, -1)
    std = (init_std * half_width).expand(batch, -1)
    best_actions, best_values = mean, torch.full((batch,), -torch.inf, device=low.device)
    for _ in range(iterations):
        noise = torch.randn(batch, samples, low.shape[0], generator=generator, device=low.device)
        actions = torch.clamp(mean.unsqueeze(1) + std.unsqueeze(1) * noise, low, high)
        top_values, top = f(actions).topk(elites, dim=1)
        elite = actions.gather(1, top.unsqueeze(-1).expand(-1, -1, actions.shape[-1]))
        mean, std = elite.mean(1), elite.std(1, correction=0)
        improved = top_values[:, 0] > best_values
        best_actions = torch.where(improved.unsqueeze(-1), elite[:, 0], best_actions)
        best_values = torch.where(improved, top_values[:, 0], best_values)
    return CEMResult(best_actions, best_values, std)
