"""The envs shipped with rlrun: registration, gymnasium's API, and the goal-env contract HER relies on."""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlrun.gym_envs
from rlrun import envs
from tests.conftest import make_config

IDS = sorted(rlrun.gym_envs.ENVS)
GOAL_IDS = ["rlrun/BitFlip-v0", "rlrun/PointMassGoal-v0"]


def test_registration_is_idempotent():
    specs = {env_id: gym.spec(env_id) for env_id in IDS}
    importlib.reload(rlrun.gym_envs)
    rlrun.gym_envs.register()
    assert {env_id: gym.spec(env_id) for env_id in IDS} == specs


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_env_checker_passes(env_id):
    check_env(gym.make(env_id, render_mode="rgb_array").unwrapped)


@pytest.mark.parametrize("name", ["bitflip", "point_mass", "point_mass_goal"])
def test_env_configs_build_their_env(name):
    cfg = make_config(f"env={name}").env
    env = gym.make(cfg.id, **envs.make_kwargs(cfg))
    assert env.reset(seed=0)[0] in env.observation_space


def test_bitflip_length_follows_n_bits_and_an_idle_episode_is_truncated_after_n_bits_steps():
    cfg = make_config("env=bitflip", "env.n_bits=15").env
    env = gym.make(cfg.id, **envs.make_kwargs(cfg))
    env.reset(seed=0)
    assert env.action_space.n == 15 and env.observation_space["desired_goal"].shape == (15,)
    env.unwrapped.bits[:], env.unwrapped.target[:] = 0.0, 1.0
    for step in range(1, 16):  # flipping bit 0 back and forth never matches an all-ones target
        _, reward, terminated, truncated, info = env.step(0)
        assert (reward, terminated, info["is_success"]) == (-1.0, False, False)
        assert truncated == (step == 15)


def test_bitflip_solved_by_flipping_the_differing_bits():
    env = gym.make("rlrun/BitFlip-v0")
    obs, _ = env.reset(seed=3)
    differing = np.flatnonzero(obs["achieved_goal"] != obs["desired_goal"])
    for i, bit in enumerate(differing):
        obs, reward, terminated, _, info = env.step(int(bit))
        last = i == len(differing) - 1
        assert (reward, terminated, info["is_success"]) == ((0.0, True, True) if last else (-1.0, False, False))
    np.testing.assert_array_equal(obs["observation"], obs["desired_goal"])


def test_point_mass_goal_reached_by_heading_to_it():
    env = gym.make("rlrun/PointMassGoal-v0")
    obs, info = env.reset(seed=0)
    assert not info["is_success"]
    for _ in range(50):
        obs, reward, terminated, _, info = env.step((obs["desired_goal"] - obs["achieved_goal"]) * 10)
        if terminated:
            break
    assert (reward, terminated, info["is_success"]) == (0.0, True, True)
    assert np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]) <= env.unwrapped.goal_radius


def test_point_mass_reward_is_minus_the_distance_to_the_goal_it_is_given():
    env = gym.make("rlrun/PointMass-v0")
    env.unwrapped.set_goal((0.5, -0.25))
    position, _ = env.reset(seed=0)
    position, reward, terminated, *_ = env.step(np.array([1.0, 1.0], dtype=np.float32))
    assert reward == pytest.approx(-np.linalg.norm(position - np.array([0.5, -0.25])), rel=1e-6)
    assert not terminated
    with pytest.raises(ValueError, match="arena"):
        env.unwrapped.set_goal((1.5, 0.0))


def test_point_mass_episodes_end_by_the_time_limit():
    env = gym.make("rlrun/PointMass-v0")
    env.reset(seed=0)
    ends = [env.step(env.action_space.sample())[3] for _ in range(50)]
    assert ends == [False] * 49 + [True]


def _rollout(env: gym.Env, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Achieved goals, desired goals, rewards and terminations of random steps (resetting when an episode ends)."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    achieved, desired, rewards, terminated = [], [], [], []
    for _ in range(steps):
        obs, reward, term, trunc, _ = env.step(env.action_space.sample())
        achieved.append(obs["achieved_goal"])
        desired.append(obs["desired_goal"])
        rewards.append(reward)
        terminated.append(term)
        if term or trunc:
            obs, _ = env.reset()
    return np.array(achieved), np.array(desired), np.array(rewards), np.array(terminated)


@pytest.mark.parametrize("env_id", GOAL_IDS)
def test_compute_functions_are_vectorised_and_agree_with_step(env_id):
    env = gym.make(env_id, **({"n_bits": 3} if "BitFlip" in env_id else {"goal_radius": 0.3}))
    achieved, desired, rewards, terminated = _rollout(env, seed=0, steps=300)
    assert terminated.any() and not terminated.all()  # both outcomes occur, so agreement is tested on both
    goal_env = env.unwrapped
    batch_rewards = goal_env.compute_reward(achieved, desired, {})
    batch_terminated = goal_env.compute_terminated(achieved, desired, {})
    assert batch_rewards.shape == batch_terminated.shape == (300,)
    np.testing.assert_array_equal(batch_rewards, rewards)
    np.testing.assert_array_equal(batch_terminated, terminated)
    np.testing.assert_array_equal(goal_env.compute_truncated(achieved, desired, {}), np.zeros(300, dtype=bool))
    # relabelling: with the achieved goal as desired goal every transition is a success
    np.testing.assert_array_equal(goal_env.compute_reward(achieved, achieved, {}), np.zeros(300))
    assert goal_env.compute_terminated(achieved, achieved, {}).all()
