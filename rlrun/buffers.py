"""A bounded replay buffer of transitions (s, a, r, s', terminated), sampled in batches with numpy.

A time-limit cut is stored as a transition that is not terminated, so its target bootstraps
from Q(s', .); only a true terminal state has no value after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from rlrun.data import Rollout


@dataclass
class Transitions:
    """A batch of transitions, one row each."""

    obs: np.ndarray  # [B, *obs_shape]
    actions: np.ndarray  # [B] int64 (Discrete) or [B, *action_shape] float32 (Box)
    rewards: np.ndarray  # [B] float32
    next_obs: np.ndarray  # [B, *obs_shape]
    terminated: np.ndarray  # [B] bool

    def __len__(self) -> int:
        return len(self.rewards)

    def to(self, device: torch.device) -> Transitions:
        """The same batch as torch tensors on `device`."""
        return Transitions(*(torch.as_tensor(getattr(self, f), device=device) for f in FIELDS))


FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")


def storage_dtype(space: gym.Space) -> np.dtype:
    return np.dtype(np.int64) if isinstance(space, gym.spaces.Discrete) else np.dtype(np.float32)


def from_rollout(rollout: Rollout) -> Transitions:
    """The rollout's real transitions (reset steps left out), flattened over time and envs."""
    valid = rollout.valid
    return Transitions(
        obs=rollout.obs[:-1][valid],
        actions=rollout.actions[valid],
        rewards=rollout.rewards[valid],
        next_obs=rollout.obs[1:][valid],
        terminated=rollout.terminated[valid],
    )


class ReplayBuffer:
    """The newest `capacity` transitions in preallocated arrays; the oldest are overwritten first."""

    def __init__(self, capacity: int, obs_space: gym.Space, action_space: gym.Space):
        self.capacity, self.size, self.pos = capacity, 0, 0
        obs_shape, action_shape = obs_space.shape, action_space.shape
        self.data = Transitions(
            obs=np.zeros((capacity, *obs_shape), storage_dtype(obs_space)),
            actions=np.zeros((capacity, *action_shape), storage_dtype(action_space)),
            rewards=np.zeros(capacity, np.float32),
            next_obs=np.zeros((capacity, *obs_shape), storage_dtype(obs_space)),
            terminated=np.zeros(capacity, bool),
        )

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Transitions) -> None:
        n = min(len(batch), self.capacity)
        rows = (self.pos + np.arange(n)) % self.capacity
        for field in FIELDS:
            getattr(self.data, field)[rows] = getattr(batch, field)[len(batch) - n :]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        """`batch_size` transitions drawn uniformly with replacement."""
        rows = rng.integers(self.size, size=batch_size)
        return Transitions(*(getattr(self.data, field)[rows] for field in FIELDS))

    def state_dict(self) -> dict:
        stored = {f: torch.from_numpy(getattr(self.data, f)[: self.size].copy()) for f in FIELDS}
        return {"pos": self.pos, "size": self.size, **stored}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.size = state["pos"], state["size"]
        for field in FIELDS:
            getattr(self.data, field)[: self.size] = state[field].numpy()
