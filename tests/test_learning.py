"""Every algorithm family learns: one-step bandits whose best return is known, small enough to
learn in a few seconds, so a flipped sign, a broken baseline or targets that never move fail CI.

A contextual bandit shows a one-hot context of 3 and pays 1 for the matching arm (a uniform policy
earns 1/3); a continuous one shows a target c in [-1, 1] and pays -(a - c)^2 (a uniform policy earns
about -0.67, the mean action 0 about -0.33). Learning quality on real tasks is measured by
scripts/seeds_to_threshold.py, not here.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from rlrun import runner
from tests.conftest import make_config


class ContextBandit(gym.Env):
    """One step: a one-hot context of `n`; the arm matching it pays 1, any other 0."""

    def __init__(self, n: int = 3):
        self.n = n
        self.observation_space = gym.spaces.Box(0, 1, (n,), np.float32)
        self.action_space = gym.spaces.Discrete(n)
        self.context = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.context = int(self.np_random.integers(self.n))
        return np.eye(self.n, dtype=np.float32)[self.context], {}

    def step(self, action):
        return np.eye(self.n, dtype=np.float32)[self.context], float(action == self.context), True, False, {}


class TargetBandit(gym.Env):
    """One step: a target c in [-1, 1]; the action a in [-1, 1] pays -(a - c)^2."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.target = np.zeros(1, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.target = self.np_random.uniform(-1, 1, size=1).astype(np.float32)
        return self.target.copy(), {}

    def step(self, action):
        reward = -float(((np.asarray(action) - self.target) ** 2).sum())
        return self.target.copy(), reward, True, False, {}


gym.register("rlrun-test/ContextBandit-v0", entry_point=ContextBandit)
gym.register("rlrun-test/TargetBandit-v0", entry_point=TargetBandit)
DISCRETE = ["env=gym", "env.id=rlrun-test/ContextBandit-v0"]
CONTINUOUS = ["env=gym", "env.id=rlrun-test/TargetBandit-v0"]
COMMON = ["eval.episodes=30", "checkpoint.every=0", "log.progress=none"]


@pytest.mark.parametrize(
    "env, overrides, at_least",
    [
        (DISCRETE, ["algo=reinforce", "algo.N=16", "algo.lr=0.05", "total_timesteps=1500"], 0.9),
        (DISCRETE, ["algo=reinforce", "algo.baseline=value", "algo.N=16", "algo.lr=0.05", "total_timesteps=1500"], 0.9),
        (DISCRETE, ["algo=actor_critic", "algo.num_envs=8", "algo.T=4", "algo.lr=0.01", "total_timesteps=3000"], 0.9),
        (DISCRETE, ["algo=ppo", "algo.num_envs=8", "algo.T=16", "algo.minibatch_size=32", "total_timesteps=2000"], 0.9),
        (DISCRETE, ["algo=fqi", "algo.N=64", "algo.K=2", "algo.S=16", "algo.learning_starts=64",
                    "algo.epsilon_decay_steps=500", "total_timesteps=1000"], 0.9),
        (CONTINUOUS, ["algo=reinforce", "algo.N=32", "algo.lr=0.02", "total_timesteps=4000"], -0.05),
        (CONTINUOUS, ["algo=ppo", "algo.num_envs=8", "algo.T=16", "algo.minibatch_size=32", "algo.lr=0.003",
                      "total_timesteps=4000"], -0.05),
        (CONTINUOUS, ["algo=qtopt", "algo.N=64", "algo.num_envs=8", "algo.K=2", "algo.S=16", "algo.learning_starts=64",
                      "total_timesteps=800"], -0.05),
    ],
    ids=["reinforce", "reinforce-value-baseline", "actor_critic", "ppo", "fqi",
         "reinforce-gaussian", "ppo-gaussian", "qtopt"],
)
def test_each_family_learns_a_bandit_whose_best_return_is_known(tmp_path, env, overrides, at_least):
    cfg = make_config(*env, *overrides, *COMMON, f"eval.every={10**9}")
    runner.train(cfg, tmp_path)
    final = json.loads((tmp_path / runner.SUMMARY_FILE).read_text())["eval_return_mean"]
    assert final >= at_least, f"final eval {final:.3f} < {at_least}"
