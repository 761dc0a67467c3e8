"""Bounded replay buffers of transitions (s, a, r, s', terminated), sampled in batches with numpy.

A time-limit cut is stored as a transition that is not terminated, so its target bootstraps
from Q(s', .); only a true terminal state has no value after it. Observations may be dicts of
arrays (Dict spaces), stored key by key.

`ReplayBuffer` keeps transitions in arrival order. `HindsightReplayBuffer` keeps each sub-env's
transitions in a column of their own, in time order, so it knows where every episode starts and
ends (also the one still running); when it samples, it relabels part of the batch with goals the
agent achieved (hindsight experience replay), so memory does not grow with the goals per transition.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlrun.data import Observations, Rollout, index_obs, map_obs, put_obs
from rlrun.nets import as_tensors

GOAL_KEYS = ("achieved_goal", "desired_goal")  # what relabelling reads and substitutes


@dataclass
class Transitions:
    """A batch of transitions, one row each.

    A row of an n-step buffer (`NStepReplayBuffer`) spans m <= n steps: `rewards` is their discounted
    sum, `next_obs` the observation m steps on, and `discounts` holds gamma^m, the weight of the value
    bootstrapped from it. One-step rows have no `discounts` (None): the weight is the algorithm's gamma.
    """

    obs: Observations  # [B, *obs_shape], or a dict of such by key
    actions: np.ndarray  # [B] int64 (Discrete) or [B, *action_shape] float32 (Box)
    rewards: np.ndarray  # [B] float32
    next_obs: Observations  # [B, *obs_shape], or a dict of such by key
    terminated: np.ndarray  # [B] bool
    discounts: np.ndarray | None = None  # [B] float32 gamma^m of multi-step rows; None: one step each

    def __len__(self) -> int:
        return len(self.rewards)

    def to(self, device: torch.device) -> Transitions:
        """The same batch as torch tensors on `device`."""
        discounts = None if self.discounts is None else as_tensors(self.discounts, device)
        return Transitions(*(as_tensors(getattr(self, f), device) for f in FIELDS), discounts=discounts)

    @staticmethod
    def cat(batches: list[Transitions]) -> Transitions:
        """The batches' rows one after another (numpy arrays)."""
        fields = (map_obs(lambda *x: np.concatenate(x), *(getattr(b, f) for b in batches)) for f in FIELDS)
        discounts = None if batches[0].discounts is None else np.concatenate([b.discounts for b in batches])
        return Transitions(*fields, discounts=discounts)

    def split(self, size: int) -> list[Transitions]:
        """Consecutive batches of `size` rows (views, numpy or torch): `cat`'s inverse."""
        return [
            Transitions(
                *(index_obs(getattr(self, f), slice(start, start + size)) for f in FIELDS),
                discounts=None if self.discounts is None else self.discounts[start : start + size],
            )
            for start in range(0, len(self), size)
        ]

    def bootstrap_weights(self, gamma: float):
        """What multiplies max_a' Q'(s', a') in the target: gamma^m, or gamma for one-step rows."""
        return gamma if self.discounts is None else self.discounts


FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")


def storage_dtype(space: gym.Space) -> np.dtype:
    return np.dtype(np.int64) if isinstance(space, gym.spaces.Discrete) else np.dtype(np.float32)


def zeros(space: gym.Space, leading: tuple[int, ...]) -> Observations:
    """Zeroed storage for `leading`-shaped batches of `space`'s values (a dict of arrays for a Dict space)."""
    if isinstance(space, gym.spaces.Dict):
        return {key: zeros(sub, leading) for key, sub in space.spaces.items()}
    return np.zeros((*leading, *space.shape), storage_dtype(space))


def from_rollout(rollout: Rollout) -> Transitions:
    """The rollout's real transitions (reset steps left out), flattened over time and envs."""
    valid = rollout.valid
    return Transitions(
        obs=index_obs(index_obs(rollout.obs, slice(None, -1)), valid),
        actions=rollout.actions[valid],
        rewards=rollout.rewards[valid],
        next_obs=index_obs(index_obs(rollout.obs, slice(1, None)), valid),
        terminated=rollout.terminated[valid],
    )


def n_step_transitions(rollout: Rollout, n: int, gamma: float) -> tuple[Transitions, np.ndarray]:
    """The rollout's real transitions as n-step rows, and each row's gamma^m.

    From step t a row sums m = n rewards, sum_k gamma^k r_(t+k), and leads to s_(t+m); m is less
    where the episode ends first (its final observation; `terminated` if it ended in a terminal
    state) or the rollout does (s_T: the next rollout's steps are not known yet). n = 1 gives
    `from_rollout`'s rows with gamma for each.
    """
    T, num_envs = rollout.rewards.shape
    t, env = np.indices((T, num_envs))
    ended = rollout.terminated | rollout.truncated
    returns = np.zeros((T, num_envs), np.float64)
    weight = np.ones((T, num_envs))  # gamma^m
    m = np.zeros((T, num_envs), np.int64)
    terminated = np.zeros((T, num_envs), bool)
    running = rollout.valid.copy()  # rows whose sum goes on; reset steps start none
    for k in range(n):
        step = np.minimum(t + k, T - 1)
        running &= t + k < T
        returns += np.where(running, weight * rollout.rewards[step, env], 0.0)
        weight = np.where(running, weight * gamma, weight)
        m += running
        terminated |= running & rollout.terminated[step, env]
        running &= ~ended[step, env]
    valid = rollout.valid
    rows = Transitions(
        obs=index_obs(index_obs(rollout.obs, slice(None, -1)), valid),
        actions=rollout.actions[valid],
        rewards=returns[valid].astype(np.float32),
        next_obs=index_obs(rollout.obs, ((t + m)[valid], env[valid])),
        terminated=terminated[valid],
    )
    return rows, weight[valid].astype(np.float32)


def _empty_storage(capacity: tuple[int, ...], obs_space: gym.Space, action_space: gym.Space) -> Transitions:
    return Transitions(
        obs=zeros(obs_space, capacity),
        actions=zeros(action_space, capacity),
        rewards=np.zeros(capacity, np.float32),
        next_obs=zeros(obs_space, capacity),
        terminated=np.zeros(capacity, bool),
    )


def _gather(data: Transitions, index: Any) -> Transitions:
    return Transitions(*(index_obs(getattr(data, f), index) for f in FIELDS))


def _saved(data: Transitions, rows: int) -> dict:
    return {f: map_obs(lambda x: torch.from_numpy(x[:rows].copy()), getattr(data, f)) for f in FIELDS}


def _restore(data: Transitions, state: dict, rows: int) -> None:
    for field in FIELDS:
        put_obs(getattr(data, field), slice(0, rows), map_obs(lambda t: t.numpy(), state[field]))


class ReplayBuffer:
    """The newest `capacity` transitions in preallocated arrays; the oldest are overwritten first."""

    def __init__(self, capacity: int, obs_space: gym.Space, action_space: gym.Space):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.data = _empty_storage((capacity,), obs_space, action_space)

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Transitions) -> np.ndarray:
        """Store the batch (its newest `capacity` rows if it holds more); returns the rows written."""
        n = min(len(batch), self.capacity)
        rows = (self.pos + np.arange(n)) % self.capacity
        for field in FIELDS:
            put_obs(getattr(self.data, field), rows, index_obs(getattr(batch, field), slice(len(batch) - n, None)))
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        return rows

    def add_rollout(self, rollout: Rollout) -> None:
        self.add(from_rollout(rollout))

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        """`batch_size` transitions drawn uniformly with replacement."""
        return _gather(self.data, rng.integers(self.size, size=batch_size))

    def state_dict(self) -> dict:
        return {"pos": self.pos, "size": self.size, **_saved(self.data, self.size)}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.size = state["pos"], state["size"]
        _restore(self.data, state, self.size)


class NStepReplayBuffer(ReplayBuffer):
    """A replay buffer of n-step rows (`n_step_transitions`): targets r_t + ... + gamma^(m-1) r_(t+m-1)
    + gamma^m max_a' Q'(s_(t+m), a') carry a reward back m steps per target refresh instead of one.

    The sum follows the collection policy's actions, so it is exact only for the greedy policy when
    exploration is small; n of 3-5 is the usual trade (Rainbow's n = 3).
    """

    def __init__(self, capacity: int, obs_space: gym.Space, action_space: gym.Space, n: int, gamma: float):
        super().__init__(capacity, obs_space, action_space)
        self.n, self.gamma = n, gamma
        self.discounts = np.zeros(capacity, np.float32)

    def add_rollout(self, rollout: Rollout) -> None:
        rows, discounts = n_step_transitions(rollout, self.n, self.gamma)
        written = self.add(rows)
        self.discounts[written] = discounts[len(rows) - len(written) :]

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        index = rng.integers(self.size, size=batch_size)
        batch = _gather(self.data, index)
        batch.discounts = self.discounts[index]
        return batch

    def state_dict(self) -> dict:
        return {**super().state_dict(), "discounts": torch.from_numpy(self.discounts[: self.size].copy())}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.discounts[: self.size] = state["discounts"].numpy()


GoalFunction = Callable[[np.ndarray, np.ndarray, Any], np.ndarray]


class HindsightReplayBuffer:
    """The newest transitions of each of `num_envs` sub-envs, `capacity` in all, with their episodes.

    Observations are goal-env dicts (`observation`, `achieved_goal`, `desired_goal`). `sample`
    draws stored transitions uniformly and replaces the desired goal of a fraction k / (k + 1) of
    them with the goal achieved after a transition of the same episode, chosen by `strategy`:
    `future` one at or after the relabelled transition, `final` the episode's last (the newest
    while it runs), `episode` any stored one. Reward and termination are recomputed with the env's
    vectorised `compute_reward(achieved_goal, desired_goal, info)` and `compute_terminated(...)` (info: None).

    Each stored transition keeps the position of its episode's first and last transition in its
    sub-env's sequence (`-1` as the last while the episode runs: the newest transition stands in).
    """

    def __init__(
        self,
        capacity: int,
        obs_space: gym.Space,
        action_space: gym.Space,
        num_envs: int,
        strategy: str,
        k: int,
        compute_reward: GoalFunction,
        compute_terminated: GoalFunction,
    ):
        self.rows, self.num_envs = math.ceil(capacity / num_envs), num_envs
        self.strategy, self.k = strategy, k
        self.compute_reward, self.compute_terminated = compute_reward, compute_terminated
        self.data = _empty_storage((self.rows, num_envs), obs_space, action_space)
        # positions in a sub-env's sequence of transitions (0 = its first ever), not rows
        self.episode_start = np.zeros((self.rows, num_envs), np.int64)
        self.episode_end = np.full((self.rows, num_envs), -1, np.int64)
        self.written = np.zeros(num_envs, np.int64)  # transitions each sub-env has stored so far
        self.running_start = np.zeros(num_envs, np.int64)  # where each sub-env's current episode began

    def __len__(self) -> int:
        return int(np.minimum(self.written, self.rows).sum())

    def add_rollout(self, rollout: Rollout) -> None:
        """Store the rollout's real transitions (reset steps left out), each sub-env in its column."""
        ended = rollout.terminated | rollout.truncated
        for env in range(self.num_envs):
            steps = np.flatnonzero(rollout.valid[:, env])
            if len(steps):
                self._add_column(env, steps, rollout, ended[steps, env])

    def _add_column(self, env: int, steps: np.ndarray, rollout: Rollout, ends: np.ndarray) -> None:
        first = self.written[env]
        position = first + np.arange(len(steps))
        # an episode starts after every end; before the first end the running episode goes on
        starts = np.maximum.accumulate(np.where(np.r_[False, ends[:-1]], position, self.running_start[env]))
        # an episode ends at its first end at or after a transition; none yet: -1 (running)
        next_end = np.minimum.accumulate(np.where(ends, position, np.iinfo(np.int64).max)[::-1])[::-1]
        last = np.where(next_end == np.iinfo(np.int64).max, -1, next_end)
        keep = slice(max(0, len(steps) - self.rows), None)  # a column holds its newest `rows` transitions
        rows, kept = position[keep] % self.rows, steps[keep]
        for field, values in (
            ("obs", index_obs(rollout.obs, (kept, env))),
            ("actions", rollout.actions[kept, env]),
            ("rewards", rollout.rewards[kept, env]),
            ("next_obs", index_obs(rollout.obs, (kept + 1, env))),
            ("terminated", rollout.terminated[kept, env]),
        ):
            put_obs(getattr(self.data, field), (rows, env), values)
        self.episode_start[rows, env] = starts[keep]
        self.episode_end[rows, env] = last[keep]
        self.written[env] += len(steps)
        if ends.any():
            # the episode that was running before this rollout ended in it: its stored transitions learn where
            earlier = np.arange(max(self.running_start[env], self.written[env] - self.rows), first)
            self.episode_end[earlier % self.rows, env] = position[ends][0]
            self.running_start[env] = position[ends][-1] + 1

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        """`batch_size` stored transitions drawn uniformly with replacement; the first
        round(batch_size k / (k + 1)) of them relabelled with hindsight goals."""
        stored = np.minimum(self.written, self.rows)
        filled = np.cumsum(stored)
        drawn = rng.integers(filled[-1], size=batch_size)
        envs = np.searchsorted(filled, drawn, side="right")
        rows = drawn - (filled - stored)[envs]
        batch = _gather(self.data, (rows, envs))
        relabelled = round(batch_size * self.k / (self.k + 1))
        goals = self.hindsight_goals(rows[:relabelled], envs[:relabelled], rng)
        self.relabel(batch, goals)
        return batch

    def hindsight_goals(self, rows: np.ndarray, envs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For stored transitions (row, sub-env): the achieved goal after a transition the strategy picks."""
        newest = self.written[envs] - 1
        position = newest - (newest - rows) % self.rows
        end = self.episode_end[rows, envs]
        end = np.where(end < 0, newest, end)
        if self.strategy == "final":
            chosen = end
        else:
            oldest_stored = np.maximum(self.episode_start[rows, envs], self.written[envs] - self.rows)
            chosen = rng.integers(position if self.strategy == "future" else oldest_stored, end + 1)
        return self.data.next_obs["achieved_goal"][chosen % self.rows, envs]

    def relabel(self, batch: Transitions, goals: np.ndarray) -> None:
        """Make `goals` the desired goals of the batch's first len(goals) transitions, in place."""
        n = len(goals)
        batch.obs["desired_goal"][:n] = goals
        batch.next_obs["desired_goal"][:n] = goals
        achieved = batch.next_obs["achieved_goal"][:n]
        batch.rewards[:n] = np.broadcast_to(self.compute_reward(achieved, goals, None), n)
        batch.terminated[:n] = np.broadcast_to(self.compute_terminated(achieved, goals, None), n)

    def state_dict(self) -> dict:
        rows = int(min(self.written.max(), self.rows))
        bookkeeping = {
            "episode_start": torch.from_numpy(self.episode_start[:rows].copy()),
            "episode_end": torch.from_numpy(self.episode_end[:rows].copy()),
            "written": torch.from_numpy(self.written.copy()),
            "running_start": torch.from_numpy(self.running_start.copy()),
        }
        return {**bookkeeping, **_saved(self.data, rows)}

    def load_state_dict(self, state: dict) -> None:
        self.written = state["written"].numpy().copy()
        self.running_start = state["running_start"].numpy().copy()
        rows = int(min(self.written.max(), self.rows))
        self.episode_start[:rows] = state["episode_start"].numpy()
        self.episode_end[:rows] = state["episode_end"].numpy()
        _restore(self.data, state, rows)


def has_goals(obs_space: gym.Space) -> bool:
    """Whether observations of `obs_space` carry the goals hindsight relabelling substitutes."""
    return isinstance(obs_space, gym.spaces.Dict) and all(key in obs_space.spaces for key in GOAL_KEYS)
