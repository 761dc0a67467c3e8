"""envpool as the backend of a run's training envs (`env.backend=envpool`, `pip install "rlrun[envpool]"`).

`EnvPoolVecEnv` is the gymnasium vector env rlrun's collectors step, over an envpool pool. envpool's
autoreset is gymnasium's NEXT_STEP, as rlrun's collectors expect: the step that ends an episode
returns that episode's final observation, reward and flags; the next step resets that env (its
action is ignored) and returns the new episode's first observation with reward 0 and neither flag.
What differs from a gymnasium env is mended here:

- A terminal state reached on the time limit's step: gymnasium's TimeLimit reports it terminated
  (and truncated), envpool truncated only, which would bootstrap a state whose value is 0. Where
  envpool says truncated, the env's own terminal test is applied to the final observation.
- Seeds: envpool takes one at construction (env i draws from seed + i, as gymnasium's vector envs
  do) and ignores `reset(seed=...)`; here `reset(seed=s)` builds a new pool with seed s (about a
  millisecond), so a run's envs follow from its seed.
- Spaces are the gymnasium env's, so networks and checks see the same spaces on both backends.
- `info` is empty: none of envpool's keys (env_id, elapsed_step, ...) is one rlrun reads.
- A checkpoint cannot hold envpool's env states (`keeps_state`): a resumed run starts new episodes.

envpool itself is imported only when a pool is built (it takes about a second to import).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


def _cartpole(obs: np.ndarray) -> np.ndarray:
    return (np.abs(obs[:, 0]) > 2.4) | (np.abs(obs[:, 2]) > 12 * 2 * math.pi / 360)


def _acrobot(obs: np.ndarray) -> np.ndarray:
    cos1, sin1, cos2, sin2 = obs[:, 0], obs[:, 1], obs[:, 2], obs[:, 3]
    return -cos1 - (cos1 * cos2 - sin1 * sin2) > 1.0  # the tip above the line: -cos(t1) - cos(t1 + t2) > 1


def _mountain_car(goal_position: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda obs: (obs[:, 0] >= goal_position) & (obs[:, 1] >= 0.0)


def _never(obs: np.ndarray) -> np.ndarray:
    return np.zeros(len(obs), dtype=bool)


# The gymnasium ids envpool runs with gymnasium's dynamics, rewards and time limits, each with the
# env's terminal test on an observation batch (gymnasium's, as the observation gives it). Pendulum-v1
# differs in one place: at the +-8 speed limit envpool moves the angle by the speed before clipping.
TERMINAL: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "CartPole-v0": _cartpole,
    "CartPole-v1": _cartpole,
    "Acrobot-v1": _acrobot,
    "MountainCar-v0": _mountain_car(0.5),
    "MountainCarContinuous-v0": _mountain_car(0.45),
    "Pendulum-v1": _never,
}


def pool_maker(env_id: str, num_envs: int, max_episode_steps: int) -> Callable[[int], Any]:
    """seed -> a new envpool pool of `num_envs` envs of `env_id` with this time limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # envpool's spaces have float64 bounds, which gymnasium warns of casting
        import envpool

    def make(seed: int) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pool = envpool.make_gymnasium(
                env_id, num_envs=num_envs, batch_size=num_envs, seed=seed, max_episode_steps=max_episode_steps
            )
            pool.observation_space, pool.action_space  # noqa: B018  (built on first use, warning; now, quietly)
        return pool

    return make


class EnvPoolVecEnv(gym.vector.VectorEnv):
    """`num_envs` envs in a pool that `make_pool(seed)` builds (`pool_maker`, or a fake in tests)."""

    metadata: ClassVar[dict] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}
    keeps_state = False  # what a checkpoint can hold of it is not where its envs are (rlrun.state)

    def __init__(
        self,
        make_pool: Callable[[int], Any],
        num_envs: int,
        single_observation_space: gym.Space,
        single_action_space: gym.Space,
        terminal: Callable[[np.ndarray], np.ndarray],
    ):
        self.num_envs = num_envs
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = gym.vector.utils.batch_space(single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(single_action_space, num_envs)
        self.make_pool, self.terminal = make_pool, terminal
        self.pool = None  # built by the first reset
        self.obs_dtype = single_observation_space.dtype
        discrete = isinstance(single_action_space, gym.spaces.Discrete)
        self.action_dtype = np.int32 if discrete else np.float32
        self.action_shape = (num_envs, *single_action_space.shape)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None or self.pool is None:
            if self.pool is not None:
                self.pool.close()
            self.pool = self.make_pool(int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**31))
        obs, _ = self.pool.reset()
        return np.asarray(obs, dtype=self.obs_dtype), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions, dtype=self.action_dtype).reshape(self.action_shape)
        obs, rewards, terminated, truncated, _ = self.pool.step(actions)
        obs = np.asarray(obs, dtype=self.obs_dtype)
        terminated, truncated = np.array(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        if truncated.any():  # the time limit's step: a terminal state there is terminated, as in gymnasium
            terminated[truncated] = self.terminal(obs[truncated])
        return obs, np.asarray(rewards, dtype=np.float64), terminated, truncated, {}

    def close_extras(self, **kwargs: Any) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
