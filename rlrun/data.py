"""Trajectory batches and the returns estimated from them.

Arrays are time-major, shape [T, N]: step t of sub-env (column) n. Termination and truncation
are kept apart: a terminal state has value 0, a time-limit cut is bootstrapped from V(s_T)
when the caller has a value function (and from 0 otherwise).

An observation batch is an array, or for a Dict observation space a dict of arrays by key, all
with the same leading (batch) dimensions; `map_obs`, `index_obs`, `put_obs` and `batch_len` treat
both alike (and torch tensors as numpy arrays). Where the env reports `info["is_success"]` (goal
envs), the step that ends an episode says whether it succeeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlrun.state import load_plain_state, plain_state

Observations = np.ndarray | dict[str, np.ndarray]


def map_obs(fn: Callable[..., np.ndarray], *obs: Observations) -> Observations:
    """`fn` of observation batches: of the arrays themselves, or key by key for dicts."""
    if isinstance(obs[0], dict):
        return {key: fn(*(o[key] for o in obs)) for key in obs[0]}
    return fn(*obs)


def index_obs(obs: Observations, index: Any) -> Observations:
    """obs[index], key by key for dicts."""
    return map_obs(lambda x: x[index], obs)


def put_obs(target: Observations, index: Any, value: Observations) -> None:
    """target[index] = value, key by key for dicts."""
    if isinstance(target, dict):
        for key, array in target.items():
            array[index] = value[key]
    else:
        target[index] = value


def batch_len(obs: Observations) -> int:
    """The size of an observation batch's first dimension."""
    return len(next(iter(obs.values())) if isinstance(obs, dict) else obs)


def reported_successes(info: dict, ended: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From a vector env's step `info`: (which of the `ended` sub-envs reported `is_success`, its values)."""
    if "is_success" not in info:
        return np.zeros_like(ended), np.zeros_like(ended)
    reported = ended & np.asarray(info.get("_is_success", np.ones_like(ended)), dtype=bool)
    return reported, reported & np.asarray(info["is_success"]).astype(bool)


@dataclass
class Trajectories:
    """N trajectories sampled side by side, one per column, padded to the longest (T steps)."""

    obs: Observations  # [T, N, *obs_shape]
    actions: np.ndarray  # [T, N, *action_shape]
    rewards: np.ndarray  # [T, N] float
    terminated: np.ndarray  # [T, N] bool, true at a trajectory's last step if it hit a terminal state
    truncated: np.ndarray  # [T, N] bool, true at a trajectory's last step if a time limit cut it
    valid: np.ndarray  # [T, N] bool, false on the padding after a trajectory's end
    final_obs: Observations  # [N, *obs_shape] observation after each trajectory's last step
    successes: np.ndarray | None = None  # [N] bool, info["is_success"] at each last step; None if not all reported it

    @property
    def steps(self) -> int:
        return int(self.valid.sum())

    @property
    def episode_returns(self) -> np.ndarray:
        return (self.rewards * self.valid).sum(0)

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.valid.sum(0)


def sample_trajectories(env: gym.vector.VectorEnv, act: Callable[[Observations], np.ndarray], seed: int) -> Trajectories:
    """Run every sub-env of `env` for exactly one episode, all in parallel.

    A sub-env that has finished idles until the longest episode ends: its further steps are
    neither stored nor counted, so the batch is N independent trajectories of the policy.
    """
    obs, _ = env.reset(seed=seed)
    n = env.num_envs
    running = np.ones(n, dtype=bool)
    final_obs = map_obs(np.empty_like, obs)
    reported, successes = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    observations = []
    columns = {k: [] for k in ("actions", "rewards", "terminated", "truncated", "valid")}
    while running.any():
        actions = act(obs)
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        observations.append(obs)
        for key, value in (("actions", actions), ("rewards", rewards), ("valid", running)):
            columns[key].append(value)
        columns["terminated"].append(terminated & running)
        columns["truncated"].append(truncated & running & ~terminated)
        ended = (terminated | truncated) & running
        if ended.any():  # most steps end no episode, and then there is nothing more to note
            put_obs(final_obs, ended, index_obs(next_obs, ended))
            now_reported, now_succeeded = reported_successes(info, ended)
            reported |= now_reported
            successes |= now_succeeded
            running = running & ~ended
        obs = next_obs
    stacked = {k: np.stack(v) for k, v in columns.items()}
    stacked["rewards"] = stacked["rewards"].astype(np.float32) * stacked["valid"]
    return Trajectories(
        obs=map_obs(lambda *rows: np.stack(rows), *observations),
        final_obs=final_obs,
        successes=successes if reported.all() else None,
        **stacked,
    )


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


@dataclass
class Rollout:
    """T steps of N sub-envs side by side, time-major; episodes run on from one rollout to the next.

    `obs` has T + 1 rows: obs[t + 1] is the observation after step t. Where step t ended an
    episode it is that episode's final observation (gymnasium's NEXT_STEP autoreset), so V(obs[t + 1])
    is what a time-limit cut bootstraps from. The step after an episode's end is the env's reset:
    its `valid` is false, its reward 0, and it is no transition.
    """

    obs: Observations  # [T + 1, N, *obs_shape]
    actions: np.ndarray  # [T, N, *action_shape] as the policy sampled them (before clipping to bounds)
    rewards: np.ndarray  # [T, N] float32
    terminated: np.ndarray  # [T, N] bool: step t reached a terminal state
    truncated: np.ndarray  # [T, N] bool: a time limit cut the episode at step t (and it did not terminate)
    valid: np.ndarray  # [T, N] bool: false on reset steps
    episode_returns: np.ndarray  # returns of the episodes that ended during this rollout
    episode_lengths: np.ndarray  # their lengths
    episode_successes: np.ndarray  # info["is_success"] at the end of those that reported it (bool)

    @property
    def steps(self) -> int:
        return int(self.valid.sum())


def episode_metrics(*rollouts: Rollout) -> dict[str, float]:
    """Mean return and length of the episodes that ended during these rollouts, and the share that
    succeeded where the env reports it; no entry for what none of them has."""
    metrics = {}
    returns = np.concatenate([r.episode_returns for r in rollouts])
    if len(returns):
        metrics["charts/episodic_return"] = float(returns.mean())
        metrics["charts/episodic_length"] = float(np.concatenate([r.episode_lengths for r in rollouts]).mean())
    successes = np.concatenate([r.episode_successes for r in rollouts])
    if len(successes):
        metrics["charts/success_rate"] = float(successes.mean())
    return metrics


# (returns, lengths, successes) of a step or rollout in which no episode ended: one shared tuple, not three new
# arrays every env step (nothing is ever written into an empty array)
NO_ENDS = (np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool))


class RolloutCollector:
    """Steps a vector env (NEXT_STEP autoreset) T steps at a time, carrying episodes across calls."""

    def __init__(self, env: gym.vector.VectorEnv, seed: int):
        self.env = env
        self.obs, _ = env.reset(seed=seed)
        self.resetting = np.zeros(env.num_envs, dtype=bool)  # sub-envs whose next step is a reset
        self.episode_return = np.zeros(env.num_envs)
        self.episode_length = np.zeros(env.num_envs, dtype=np.int64)

    def state_dict(self) -> dict:
        """The in-progress episodes and the envs' own state, so a resumed run steps on from them."""
        return plain_state(self)

    def load_state_dict(self, state: dict) -> None:
        load_plain_state(self, state)
        if not getattr(self.env, "keeps_state", True):
            # the envs are not where the saved observations were (envpool's): every env starts a new episode
            self.obs, _ = self.env.reset()
            self.resetting[:] = False
            self.episode_return[:] = 0.0
            self.episode_length[:] = 0

    def collect(self, sample: Callable[[Observations], tuple[np.ndarray, np.ndarray]], T: int) -> Rollout:
        """`sample(obs)` returns (actions to store, actions for the env) for a batch of observations."""
        n = self.env.num_envs
        obs = map_obs(lambda x: np.empty((T + 1, *x.shape), dtype=x.dtype), self.obs)
        if T == 1:  # the online actor-critic box's every env step: no per-step lists to stack
            put_obs(obs, 0, self.obs)
            stored, valid, reward, terminated, truncated, ended = self._step(sample)
            put_obs(obs, 1, self.obs)
            return Rollout(obs, stored[None], reward[None], terminated[None], truncated[None], valid[None], *ended)
        rewards = np.zeros((T, n), dtype=np.float32)
        terminated, truncated, valid = (np.zeros((T, n), dtype=bool) for _ in range(3))
        actions, ends = [], []
        for t in range(T):
            put_obs(obs, t, self.obs)
            stored, valid[t], rewards[t], terminated[t], truncated[t], ended = self._step(sample)
            actions.append(stored)
            if len(ended[0]):
                ends.append(ended)
        put_obs(obs, T, self.obs)
        returns, lengths, successes = (np.concatenate(parts) for parts in zip(*ends)) if ends else NO_ENDS
        return Rollout(obs, np.stack(actions), rewards, terminated, truncated, valid, returns, lengths, successes)

    def _step(self, sample):
        """One step of every sub-env: (stored actions, valid, rewards, terminated, truncated, and the
        returns, lengths and successes of the episodes that ended in it)."""
        stored, for_env = sample(self.obs)
        valid = ~self.resetting
        self.obs, reward, term, trunc, info = self.env.step(for_env)
        rewards = np.where(valid, reward, 0.0).astype(np.float32)
        term, trunc = np.asarray(term, dtype=bool), np.asarray(trunc, dtype=bool)
        terminated = term & valid
        truncated = trunc & valid & ~term
        self.episode_return += rewards
        self.episode_length += valid
        ended = terminated | truncated
        finished = NO_ENDS
        if ended.any():
            reported, succeeded = reported_successes(info, ended)
            finished = self.episode_return[ended], self.episode_length[ended], succeeded[reported]
            self.episode_return[ended] = 0.0
            self.episode_length[ended] = 0
        self.resetting = ended
        return stored, valid, rewards, terminated, truncated, finished


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    valid: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """GAE(lambda) advantages over a rollout's [T, N] arrays; `values` [T + 1, N] is V(obs).

    delta_t = r_t + gamma V(s_{t+1}) - V(s_t), with V(s_{t+1}) = 0 after a terminal step;
    A_t = delta_t + gamma lambda A_{t+1} within an episode. A time-limit cut keeps its bootstrap
    V(s_{t+1}) (its final observation) but ends the sum; the rollout's last step bootstraps from
    V(obs[T]). Reset steps get 0. lambda = 1 gives the n-step returns of `discounted_returns`
    minus V(s_t); lambda = 0 the one-step TD error.
    """
    advantages = np.zeros(rewards.shape, dtype=np.float32)
    next_advantage = np.zeros(rewards.shape[1:], dtype=np.float32)
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * values[t + 1] * ~terminated[t] - values[t]
        next_advantage = delta + gamma * lam * next_advantage * ~(terminated[t] | truncated[t])
        next_advantage = np.where(valid[t], next_advantage, 0.0).astype(np.float32)
        advantages[t] = next_advantage
    return advantages
