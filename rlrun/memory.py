"""Whether a run's large allocations fit in this machine's memory, estimated before any is made.

The rules' upper bounds (rlrun.config) stop typos like 10**12; values below them can still ask for
more memory than there is, and numpy or torch then fail with a MemoryError, or the kernel kills the
process part-way through. What grows with a key is estimated here from the env's spaces and the
config: replay buffers and per-iteration collections (transitions), episodes stepped side by side
(eval.episodes, reinforce's N), an iteration's minibatches and CEM's states x samples, and the
networks' parameters. The estimates count only the arrays that dominate, with episodes at their
time limit (which a good policy reaches): meant to catch values far off, not to budget memory to
the byte.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

from rlrun import envs
from rlrun.config import ConfigError

FLOAT = 4  # bytes of a float32: network inputs, activations, parameters
# Copies of each parameter a training run holds: the weights, their gradients, Adam's two moments.
PARAMETER_COPIES = 4


@dataclass(frozen=True)
class Need:
    """Memory that grows with one config key."""

    key: str
    value: Any
    bytes: int
    what: str


def available_bytes() -> int | None:
    """Memory the run may still take: MemAvailable (Linux), else the physical memory; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def shown(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def check(needs: list[Need], available: int | None = None) -> None:
    """Refuse, naming the key that needs the most, when all of `needs` together exceed the memory available."""
    available = available_bytes() if available is None else available
    total = sum(need.bytes for need in needs)
    if available is None or total <= available:
        return
    worst = max(needs, key=lambda need: need.bytes)
    raise ConfigError(
        worst.key,
        worst.value,
        f"a value that fits in this machine's memory (it needs about {shown(total)}, {shown(worst.bytes)} "
        f"of it for {worst.what}; {shown(available)} available)",
    )


def value_bytes(space: gym.Space) -> int:
    """Bytes of one stored value of `space`, as rlrun.buffers stores it (int64 Discrete, float32 otherwise)."""
    if isinstance(space, gym.spaces.Dict):
        return sum(value_bytes(sub) for sub in space.spaces.values())
    return 8 if isinstance(space, gym.spaces.Discrete) else FLOAT * int(np.prod(space.shape))


def transition_bytes(obs_space: gym.Space, action_space: gym.Space) -> int:
    """One stored transition: observation, next observation, action, reward, terminated flag."""
    return 2 * value_bytes(obs_space) + value_bytes(action_space) + FLOAT + 1


def step_bytes(obs_space: gym.Space, action_space: gym.Space) -> int:
    """One step of an episode stepped side by side: observation, action, and a few per-step numbers."""
    return value_bytes(obs_space) + value_bytes(action_space) + 4 * FLOAT


def parameters(widths: list[int]) -> int:
    """Weights and biases of fully connected layers through `widths`."""
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(widths))


def episode_limit(env_cfg: DictConfig) -> int | None:
    """The env's time limit: env.max_episode_steps, else its registration's; None when it has none."""
    steps = OmegaConf.select(env_cfg, "max_episode_steps", default=None)
    if steps is None:
        try:
            steps = gym.spec(envs.env_id(env_cfg)).max_episode_steps
        except (gym.error.Error, ConfigError):
            return None
    return steps


def episodes(key: str, count: int, env_cfg: DictConfig, spaces: tuple[gym.Space, gym.Space]) -> list[Need]:
    """`count` episodes stepped side by side and kept whole (evaluation, reinforce's batch)."""
    limit = episode_limit(env_cfg)
    if limit is None:
        return []
    return [
        Need(key, count, count * limit * step_bytes(*spaces), f"{count} episodes of up to {limit} steps side by side")
    ]


def transitions(key: str, count: int, spaces: tuple[gym.Space, gym.Space], what: str) -> list[Need]:
    return [Need(key, count, count * transition_bytes(*spaces), what)]


def networks(algo: DictConfig, spaces: tuple[gym.Space, gym.Space]) -> list[Need]:
    """One trained network of the algorithm's hidden sizes (most train two: policy and value, two Qs)."""
    hidden = OmegaConf.select(algo, "hidden_sizes", default=None)
    if hidden is None:
        return []
    obs_space, action_space = spaces
    widths = [envs.flat_obs_dim(obs_space) + envs.flat_obs_dim(action_space), *hidden, envs.flat_obs_dim(action_space)]
    size = PARAMETER_COPIES * FLOAT * parameters(widths)
    return [Need("algo.hidden_sizes", list(hidden), size, "a network's parameters, gradients and Adam moments")]


def run_needs(cfg: DictConfig, spaces: tuple[gym.Space, gym.Space]) -> list[Need]:
    """What the run's config asks for: evaluation, the algorithm's buffers and batches, its networks."""
    algo = cfg.algo
    needs = episodes("eval.episodes", cfg.eval.episodes, cfg.env, spaces)
    needs += networks(algo, spaces)
    name = algo.name
    if name == "reinforce":
        needs += episodes("algo.N", algo.N, cfg.env, spaces)
    if name in ("fqi", "qtopt") and OmegaConf.select(algo, "dataset", default=None) is None:
        needs += transitions("algo.buffer_size", algo.buffer_size, spaces, "the replay buffer")
        needs += transitions("algo.N", algo.N, spaces, "one iteration's collection")
    if name in ("fqi", "qtopt"):  # an iteration draws its S minibatches at once: the draws and their concatenation
        key, value = furthest_above(algo, {"S": 16, "batch_size": 64})
        rows = algo.S * algo.batch_size
        needs.append(Need(key, value, 2 * rows * transition_bytes(*spaces),
                          f"an iteration's {algo.S} minibatches of {algo.batch_size} transitions"))
    if name == "dagger":
        needs += transitions("algo.N", algo.N, spaces, "one round's labelled states")
    if name == "qtopt":
        needs.append(cem(algo, spaces))
    return needs


def furthest_above(algo: DictConfig, usual: dict[str, int]) -> tuple[str, Any]:
    """Of keys whose values multiply into one size, the one most times its usual value (the one to name),
    as (key, value)."""
    name = max(usual, key=lambda k: algo[k] / usual[k])
    return f"algo.{name}", algo[name]


def cem(algo: DictConfig, spaces: tuple[gym.Space, gym.Space]) -> Need:
    """The targets' CEM search scores S x batch_size x cem_samples (state, action) pairs at once: their
    inputs and each hidden layer's outputs (the widest two at a time, of both Qs: an upper bound)."""
    obs_space, action_space = spaces
    pairs = algo.S * algo.batch_size * algo.cem_samples
    widest = max(algo.hidden_sizes, default=1)
    size = pairs * FLOAT * (envs.flat_obs_dim(obs_space) + envs.flat_obs_dim(action_space) + 2 * 2 * widest)
    key, value = furthest_above(algo, {"S": 10, "batch_size": 64, "cem_samples": 16})
    return Need(key, value, size, f"CEM's {pairs} (state, action) pairs per iteration")


def env_spaces(env_cfg: DictConfig) -> tuple[gym.Space, gym.Space]:
    """The env's observation and action spaces, from one instance made and closed."""
    env = envs.make_env(env_cfg)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
