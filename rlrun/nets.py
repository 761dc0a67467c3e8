"""Networks: MLPs, categorical and Gaussian policies, value functions."""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str = "tanh") -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation]()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ObsEncoder(nn.Module):
    """Observations as flat float vectors; Discrete observations become one-hot."""

    def __init__(self, space: gym.Space):
        super().__init__()
        self.n = int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        self.obs_dims = len(space.shape)
        self.dim = self.n if self.n is not None else int(np.prod(space.shape))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """[*batch, *obs_shape] -> [*batch, dim], for any number of batch dimensions."""
        if self.n is not None:
            return nn.functional.one_hot(obs.long(), self.n).float()
        if self.obs_dims > 1:
            obs = obs.flatten(-self.obs_dims)
        return obs.float()


class Policy(nn.Module):
    """pi_theta(a|s): categorical for Discrete actions, diagonal Gaussian with a state-independent
    log std for Box actions (actions are clipped to the bounds by the caller, not squashed)."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, hidden_sizes, activation="tanh", log_std_init=-0.5):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.body = mlp(self.encode.dim, hidden_sizes, out, activation)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))

    def distribution(self, obs: torch.Tensor) -> Distribution:
        out = self.body(self.encode(obs))
        if self.discrete:
            return Categorical(logits=out)
        return Independent(Normal(out, self.log_std.exp()), 1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The argmax action (discrete) or the mean action (continuous)."""
        out = self.body(self.encode(obs))
        return out.argmax(-1) if self.discrete else out


class ValueFunction(nn.Module):
    """V_phi(s)."""

    def __init__(self, obs_space: gym.Space, hidden_sizes, activation="tanh"):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        self.body = mlp(self.encode.dim, hidden_sizes, 1, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.body(self.encode(obs)).squeeze(-1)


class ActionAdapter:
    """Turns a batch of policy actions (torch) into what the env takes (numpy, clipped to Box bounds)."""

    def __init__(self, action_space: gym.Space):
        self.box = isinstance(action_space, gym.spaces.Box)
        if self.box:
            self.low, self.high = action_space.low, action_space.high

    def __call__(self, actions: torch.Tensor) -> np.ndarray:
        a = actions.cpu().numpy()
        return np.clip(a, self.low, self.high) if self.box else a
