"""Trajectory batches and the returns estimated from them.

Arrays are time-major, shape [T, N]: step t of sub-env (column) n. Termination and truncation
are kept apart: a terminal state has value 0, a time-limit cut is bootstrapped from V(s_T)
when the caller has a value function (and from 0 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np


@dataclass
class Trajectories:
    """N trajectories sampled side by side, one per column, padded to the longest (T steps)."""

    obs: np.ndarray  # [T, N, *obs_shape]
    actions: np.ndarray  # [T, N, *action_shape]
    rewards: np.ndarray  # [T, N] float
    terminated: np.ndarray  # [T, N] bool, true at a trajectory's last step if it hit a terminal state
    truncated: np.ndarray  # [T, N] bool, true at a trajectory's last step if a time limit cut it
    valid: np.ndarray  # [T, N] bool, false on the padding after a trajectory's end
    final_obs: np.ndarray  # [N, *obs_shape] observation after each trajectory's last step

    @property
    def steps(self) -> int:
        return int(self.valid.sum())

    @property
    def episode_returns(self) -> np.ndarray:
        return (self.rewards * self.valid).sum(0)

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.valid.sum(0)


def sample_trajectories(env: gym.vector.VectorEnv, act: Callable[[np.ndarray], np.ndarray], seed: int) -> Trajectories:
    """Run every sub-env of `env` for exactly one episode, all in parallel.

    A sub-env that has finished idles until the longest episode ends: its further steps are
    neither stored nor counted, so the batch is N independent trajectories of the policy.
    """
    obs, _ = env.reset(seed=seed)
    n = env.num_envs
    running = np.ones(n, dtype=bool)
    final_obs = np.empty_like(obs)
    columns = {k: [] for k in ("obs", "actions", "rewards", "terminated", "truncated", "valid")}
    while running.any():
        actions = act(obs)
        next_obs, rewards, terminated, truncated, _ = env.step(actions)
        for key, value in (("obs", obs), ("actions", actions), ("rewards", rewards), ("valid", running)):
            columns[key].append(value)
        columns["terminated"].append(terminated & running)
        columns["truncated"].append(truncated & running & ~terminated)
        ended = (terminated | truncated) & running
        final_obs[ended] = next_obs[ended]
        running = running & ~ended
        obs = next_obs
    stacked = {k: np.stack(v) for k, v in columns.items()}
    stacked["rewards"] = stacked["rewards"].astype(np.float32) * stacked["valid"]
    return Trajectories(final_obs=final_obs, **stacked)


def discounted_returns(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    next_values: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1}, restarted at every episode end, over [T, N] arrays.

    After a terminal step nothing is added; after a truncated step, and after the last step of
    an unfinished rollout, `next_values[t]` (V of the next observation, or 0) stands in for the
    rest. Returns float32 [T, N]. Rewards on padding must be 0 (they are in `Trajectories`).
    """
    returns = np.zeros(rewards.shape, dtype=np.float32)
    future = next_values[-1]
    for t in reversed(range(len(rewards))):
        future = np.where(terminated[t], 0.0, np.where(truncated[t], next_values[t], future))
        future = rewards[t] + gamma * future
        returns[t] = future
    return returns
