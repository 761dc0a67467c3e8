"""Offline datasets: the file format, its validation on load, and the `rlrun-collect` command.

A dataset is one `.npz` file (numpy.savez_compressed) of N transitions:

    observations       [N, *obs_shape]     floating (Box observations) or integer (Discrete ones)
    actions            [N]                 integer in [0, n) (Discrete actions)
                       [N, *action_shape]  floating (Box actions)
    rewards            [N]                 floating
    next_observations  [N, *obs_shape]     like observations: the observation after the step
    terminated         [N]                 bool: the step reached a terminal state (no value after it)
    truncated          [N]                 bool: a time limit ended the episode after the step

`rlrun-collect` (rlrun.collect) makes one with a random policy or a trained run.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

from rlrun import envs
from rlrun.buffers import Transitions, from_rollout
from rlrun.config import ConfigError
from rlrun.data import RolloutCollector

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated")


def save(path: str | Path, data: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, **{k: data[k] for k in FIELDS})


def load(path: str | Path, obs_space: gym.Space, action_space: gym.Space, key: str = "algo.dataset") -> dict:
    """The dataset at `path`, checked against the env's spaces; any problem is one ConfigError."""

    def bad(what: str) -> ConfigError:
        return ConfigError(key, str(path), what)

    if not Path(path).is_file():
        raise bad("an existing .npz dataset file (no file there)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in FIELDS if k not in npz.files]
            if missing:
                raise bad(f"a dataset with the arrays {', '.join(FIELDS)} (missing {', '.join(missing)})")
            data = {k: npz[k] for k in FIELDS}
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise bad(f"a readable .npz file (it is truncated or corrupt: {err})") from None
    check(data, obs_space, action_space, bad)
    return data


def check(data: dict, obs_space: gym.Space, action_space: gym.Space, bad: Callable[[str], ConfigError]) -> None:
    """Shapes, dtypes and value ranges against the env's observation and action spaces."""
    n = len(data["rewards"])
    if n == 0:
        raise bad("a dataset with at least one transition")
    discrete_obs = isinstance(obs_space, gym.spaces.Discrete)
    discrete_actions = isinstance(action_space, gym.spaces.Discrete)
    expected = {
        "observations": ((n, *obs_space.shape), "integer" if discrete_obs else "floating"),
        "next_observations": ((n, *obs_space.shape), "integer" if discrete_obs else "floating"),
        "actions": ((n, *action_space.shape), "integer" if discrete_actions else "floating"),
        "rewards": ((n,), "floating"),
        "terminated": ((n,), "bool"),
        "truncated": ((n,), "bool"),
    }
    kinds = {"integer": np.integer, "floating": np.floating, "bool": np.bool_}
    for name, (shape, kind) in expected.items():
        array = data[name]
        if array.shape != shape:
            raise bad(f"{name} of shape {shape} for this env (it has {array.shape})")
        if not np.issubdtype(array.dtype, kinds[kind]):
            raise bad(f"{name} of a {kind} dtype (it has {array.dtype})")
    if discrete_actions and (data["actions"].min() < 0 or data["actions"].max() >= action_space.n):
        raise bad(f"actions in [0, {action_space.n}) for the env's {envs.describe_space(action_space)} actions")
    if discrete_obs and (data["observations"].min() < 0 or data["observations"].max() >= obs_space.n):
        raise bad(f"observations in [0, {obs_space.n}) for the env's {envs.describe_space(obs_space)} observations")
    if (data["terminated"] & data["truncated"]).any():
        raise bad("transitions that are terminated or truncated, not both")


def to_transitions(data: dict) -> Transitions:
    """Replay-buffer rows; a truncated transition stays bootstrapped (not terminated)."""
    return Transitions(
        obs=data["observations"],
        actions=data["actions"],
        rewards=data["rewards"].astype(np.float32),
        next_obs=data["next_observations"],
        terminated=data["terminated"],
    )


def collect(env_cfg: DictConfig, act: Callable | None, transitions: int, epsilon: float, seed: int, num_envs: int = 8):
    """`transitions` steps of `act` (None: uniformly random actions), each replaced by a random
    action with probability `epsilon`. Returns (dataset dict, returns of the finished episodes)."""
    env = envs.make_vec_env(env_cfg, num_envs)
    space = env.single_action_space
    space.seed(seed)
    rng = np.random.default_rng(seed)

    def sample(obs):
        random = np.array([space.sample() for _ in range(len(obs))])
        if act is None:
            return random, random
        explore = rng.random(len(obs)) < epsilon
        chosen = np.asarray(act(obs))
        actions = np.where(explore.reshape(-1, *[1] * (chosen.ndim - 1)), random.astype(chosen.dtype), chosen)
        return actions, actions

    collector = RolloutCollector(env, seed)
    parts, returns, total = [], [], 0
    while total < transitions:
        rollout = collector.collect(sample, T=-(-(transitions - total) // num_envs))
        valid = rollout.valid
        part = from_rollout(rollout)
        part_truncated = rollout.truncated[valid]
        parts.append((part, part_truncated))
        returns.append(rollout.episode_returns)
        total += len(part)
    env.close()
    data = {
        "observations": np.concatenate([p.obs for p, _ in parts])[:transitions],
        "actions": np.concatenate([p.actions for p, _ in parts])[:transitions],
        "rewards": np.concatenate([p.rewards for p, _ in parts])[:transitions].astype(np.float32),
        "next_observations": np.concatenate([p.next_obs for p, _ in parts])[:transitions],
        "terminated": np.concatenate([p.terminated for p, _ in parts])[:transitions],
        "truncated": np.concatenate([t for _, t in parts])[:transitions],
    }
    return data, np.concatenate(returns)
