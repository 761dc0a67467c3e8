"""Returns on hand-computed episodes: termination, truncation, several episodes per column."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlrun.algos.reinforce import weights
from rlrun.data import Trajectories, discounted_returns, sample_trajectories


def column(*values, dtype=np.float32):
    return np.array(values, dtype=dtype)[:, None]


def test_terminated_episode_adds_nothing_after_the_end():
    rewards = column(1, 1, 1)
    returns = discounted_returns(rewards, column(0, 0, 1, dtype=bool), column(0, 0, 0, dtype=bool), column(9, 9, 9), 0.5)
    np.testing.assert_allclose(returns[:, 0], [1.75, 1.5, 1.0])


def test_truncated_episode_bootstraps_from_the_value_of_its_final_observation():
    rewards = column(1, 1, 1)
    returns = discounted_returns(rewards, column(0, 0, 0, dtype=bool), column(0, 0, 1, dtype=bool), column(0, 0, 10), 0.5)
    np.testing.assert_allclose(returns[:, 0], [3.0, 4.0, 6.0])  # 1 + .5 * (1 + .5 * (1 + .5 * 10))


def test_returns_restart_at_an_episode_end_and_bootstrap_an_unfinished_rollout():
    rewards = column(1, 1, 1, 1)
    terminated = column(0, 1, 0, 0, dtype=bool)
    truncated = column(0, 0, 0, 0, dtype=bool)
    returns = discounted_returns(rewards, terminated, truncated, column(0, 0, 0, 4), 0.5)
    np.testing.assert_allclose(returns[:, 0], [1.5, 1.0, 2.5, 3.0])


def test_columns_are_independent():
    rewards = np.array([[1, 2], [3, 4]], dtype=np.float32)
    terminated = np.array([[0, 1], [1, 0]], dtype=bool)
    truncated = np.array([[0, 0], [0, 1]], dtype=bool)
    returns = discounted_returns(rewards, terminated, truncated, np.zeros((2, 2), np.float32), 1.0)
    np.testing.assert_allclose(returns, [[4, 2], [3, 4]])


def trajectories(rewards, terminated, truncated, valid) -> Trajectories:
    r = np.array(rewards, np.float32) * np.array(valid)
    t = len(rewards)
    return Trajectories(
        obs=np.zeros((t, r.shape[1], 1), np.float32),
        actions=np.zeros(r.shape, np.int64),
        rewards=r,
        terminated=np.array(terminated, bool),
        truncated=np.array(truncated, bool),
        valid=np.array(valid, bool),
        final_obs=np.zeros((r.shape[1], 1), np.float32),
    )


@pytest.fixture
def two_trajectories():
    # column 0: 3 steps then terminal; column 1: 2 steps then cut by a time limit, then padding
    return trajectories(
        rewards=[[1, 2], [2, 2], [3, 0]],
        terminated=[[0, 0], [0, 0], [1, 0]],
        truncated=[[0, 0], [0, 1], [0, 0]],
        valid=[[1, 1], [1, 1], [1, 0]],
    )


def test_reward_to_go_weights(two_trajectories):
    w = weights(two_trajectories, gamma=1.0, reward_to_go=True, bootstrap=np.array([0.0, 5.0], np.float32))
    np.testing.assert_allclose(w[:, 0], [6, 5, 3])
    np.testing.assert_allclose(w[:2, 1], [9, 7])  # 2 + 2 + V(s_T)=5, bootstrapped after the cut


def test_full_return_weights_every_step_by_the_whole_trajectory(two_trajectories):
    w = weights(two_trajectories, gamma=1.0, reward_to_go=False, bootstrap=np.zeros(2, np.float32))
    np.testing.assert_allclose(w[:, 0], [6, 6, 6])
    np.testing.assert_allclose(w[:2, 1], [4, 4])


def test_sample_trajectories_gives_one_whole_episode_per_env():
    env = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="vector_entry_point")
    rng = np.random.default_rng(0)
    batch = sample_trajectories(env, lambda obs: rng.integers(0, 2, len(obs)), seed=0)
    lengths = batch.episode_lengths
    for n in range(3):
        assert batch.valid[: lengths[n], n].all() and not batch.valid[lengths[n] :, n].any()
        ends = batch.terminated[:, n] | batch.truncated[:, n]
        assert ends.sum() == 1 and ends[lengths[n] - 1]
    np.testing.assert_array_equal(batch.episode_returns, lengths)  # CartPole pays 1 per step
    assert batch.steps == lengths.sum() and batch.valid.shape[0] == lengths.max()
