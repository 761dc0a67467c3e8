"""Goal-conditioned fitted Q with hindsight relabelling: the goals each strategy draws, the reward
and termination recomputed for them, episode boundaries across rollouts, sub-envs and the ring's
wrap, and Dict observations through buffer, checkpoint and resume."""

from __future__ import annotations

import io
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlrun import runner
from rlrun.buffers import HindsightReplayBuffer, ReplayBuffer, from_rollout
from rlrun.build import build
from rlrun.config import ConfigError
from rlrun.data import Rollout, sample_trajectories
from rlrun.envs import make_vec_env
from tests.conftest import make_config, read_scalars

# A goal is (sub-env * 1000 + episode, steps taken in it): every achieved goal says where it came from.
GOAL = gym.spaces.Box(0, 10**6, shape=(2,), dtype=np.float32)
SPACE = gym.spaces.Dict({"observation": GOAL, "achieved_goal": GOAL, "desired_goal": GOAL})
NOT_REACHED = -1.0  # desired goal of every real transition: never achieved


def reward(achieved, desired, info):
    return np.where(np.all(achieved == desired, axis=-1), 0.0, -1.0).astype(np.float32)


def terminated(achieved, desired, info):
    return np.all(achieved == desired, axis=-1)


def her_buffer(strategy: str, capacity: int = 100, num_envs: int = 1, k: int = 4) -> HindsightReplayBuffer:
    return HindsightReplayBuffer(capacity, SPACE, gym.spaces.Discrete(2), num_envs, strategy, k, reward, terminated)


class Episodes:
    """Sub-envs whose episodes have the given lengths, stepped into Rollouts as a NEXT_STEP vector env
    would: after an episode's last step comes a reset step (not valid), then the next episode."""

    def __init__(self, lengths: list[list[int]]):
        self.lengths = lengths
        self.episode = [0] * len(lengths)
        self.t = [0] * len(lengths)
        self.resetting = [False] * len(lengths)

    def obs(self, env: int) -> np.ndarray:
        return np.array([1000 * env + self.episode[env], self.t[env]], np.float32)

    def rollout(self, T: int) -> Rollout:
        n = len(self.lengths)
        obs = np.zeros((T + 1, n, 2), np.float32)
        ended, valid = np.zeros((T, n), bool), np.zeros((T, n), bool)
        for t in range(T):
            for env in range(n):
                obs[t, env] = self.obs(env)
                valid[t, env] = not self.resetting[env]
                if self.resetting[env]:
                    self.episode[env], self.t[env], self.resetting[env] = self.episode[env] + 1, 0, False
                else:
                    self.t[env] += 1
                    ended[t, env] = self.t[env] == self.lengths[env][self.episode[env]]
                    self.resetting[env] = bool(ended[t, env])
        obs[T] = [self.obs(env) for env in range(n)]
        desired = np.full_like(obs, NOT_REACHED)
        return Rollout(
            obs={"achieved_goal": obs, "desired_goal": desired, "observation": obs.copy()},
            actions=np.zeros((T, n), np.int64),
            rewards=np.where(valid, -1.0, 0.0).astype(np.float32),
            terminated=np.zeros((T, n), bool),
            truncated=ended,
            valid=valid,
            episode_returns=np.zeros(0),
            episode_lengths=np.zeros(0),
            episode_successes=np.zeros(0, bool),
        )


def one_episode_of_four() -> Rollout:
    """Episode 0 of one sub-env, 4 transitions: achieved goals (0, 1) ... (0, 4) after them."""
    return Episodes([[4, 5]]).rollout(5)  # the 5th step is the reset: no transition


def goals_drawn(strategy: str, row: int, draws: int = 400) -> set[tuple[float, float]]:
    buffer = her_buffer(strategy)
    buffer.add_rollout(one_episode_of_four())
    goals = buffer.hindsight_goals(np.full(draws, row), np.zeros(draws, int), np.random.default_rng(0))
    return {tuple(g) for g in goals}


@pytest.mark.parametrize(
    ("strategy", "row", "expected"),
    [
        ("future", 0, {(0, 1), (0, 2), (0, 3), (0, 4)}),
        ("future", 2, {(0, 3), (0, 4)}),
        ("future", 3, {(0, 4)}),
        ("final", 0, {(0, 4)}),
        ("final", 2, {(0, 4)}),
        ("episode", 2, {(0, 1), (0, 2), (0, 3), (0, 4)}),
    ],
)
def test_each_strategy_draws_the_achieved_goals_it_names_from_a_hand_made_episode(strategy, row, expected):
    assert goals_drawn(strategy, row) == expected


@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_relabelled_reward_and_termination_come_from_the_compute_functions(strategy):
    buffer = her_buffer(strategy, k=3)
    buffer.add_rollout(one_episode_of_four())
    batch = buffer.sample(400, np.random.default_rng(1))
    n = 300  # k / (k + 1) of the batch
    goals = batch.obs["desired_goal"]
    np.testing.assert_array_equal(goals, batch.next_obs["desired_goal"])
    assert (goals[n:] == NOT_REACHED).all() and (batch.rewards[n:] == -1).all() and not batch.terminated[n:].any()
    assert (goals[:n, 0] == 0).all() and (goals[:n, 1] >= 1).all()  # achieved goals of the episode
    reached = (goals[:n] == batch.next_obs["achieved_goal"][:n]).all(-1)
    np.testing.assert_array_equal(batch.rewards[:n], np.where(reached, 0.0, -1.0))
    np.testing.assert_array_equal(batch.terminated[:n], reached)
    assert reached.any() and (strategy == "final" or not reached.all())


@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_goals_stay_in_their_episode_across_rollouts_sub_envs_and_the_ring_wrap(strategy):
    rng = np.random.default_rng(0)
    episodes = Episodes([list(rng.integers(1, 9, size=100)) for _ in range(3)])
    lengths = np.array(episodes.lengths)
    buffer = her_buffer(strategy, capacity=30, num_envs=3, k=1_000_000)  # 10 transitions per sub-env
    for T in (7, 3, 12, 5, 9, 4, 11):  # episodes run on from one rollout to the next; the ring wraps
        buffer.add_rollout(episodes.rollout(T))
        batch = buffer.sample(500, rng)
        before, after, goal = batch.obs["achieved_goal"], batch.next_obs["achieved_goal"], batch.obs["desired_goal"]
        assert (goal[:, 0] == before[:, 0]).all(), "a goal from another episode"
        env, episode = (goal[:, 0] // 1000).astype(int), (goal[:, 0] % 1000).astype(int)
        running = episode == np.array(episodes.episode)[env]
        end = np.where(running, np.array(episodes.t)[env], lengths[env, episode])  # the newest while running
        assert ((goal[:, 1] >= 1) & (goal[:, 1] <= end)).all()
        if strategy == "future":
            assert (goal[:, 1] >= after[:, 1]).all(), "a goal from before the transition"
        if strategy == "final":
            np.testing.assert_array_equal(goal[:, 1], end)
        if strategy == "episode":
            assert (goal[:, 1] < after[:, 1]).any()


def test_final_goal_of_a_running_episode_is_its_newest_transition():
    episodes = Episodes([[10]])
    buffer = her_buffer("final")
    buffer.add_rollout(episodes.rollout(3))
    assert {tuple(g) for g in buffer.hindsight_goals(np.array([0, 1, 2]), np.zeros(3, int), None)} == {(0, 3)}
    buffer.add_rollout(episodes.rollout(4))
    assert {tuple(g) for g in buffer.hindsight_goals(np.array([0, 1, 2]), np.zeros(3, int), None)} == {(0, 7)}


def test_memory_does_not_grow_with_k():
    small, large = her_buffer("future", k=1), her_buffer("future", k=64)
    assert all(a.nbytes == b.nbytes for a, b in zip(small.data.obs.values(), large.data.obs.values()))


def saved_and_loaded(state: dict) -> dict:
    file = io.BytesIO()
    torch.save(state, file)
    file.seek(0)
    return torch.load(file, weights_only=True)


def test_a_dict_observation_round_trips_through_both_buffers_and_a_weights_only_checkpoint():
    rollout = Episodes([[3, 4, 2], [5, 1, 6]]).rollout(8)
    for fresh in (lambda: ReplayBuffer(100, SPACE, gym.spaces.Discrete(2)), lambda: her_buffer("future", num_envs=2)):
        buffer, copy = fresh(), fresh()
        buffer.add_rollout(rollout)
        copy.load_state_dict(saved_and_loaded(buffer.state_dict()))
        a, b = buffer.sample(64, np.random.default_rng(3)), copy.sample(64, np.random.default_rng(3))
        for key in SPACE.spaces:
            np.testing.assert_array_equal(a.obs[key], b.obs[key])
            np.testing.assert_array_equal(a.next_obs[key], b.next_obs[key])
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.terminated, b.terminated)
    flat = from_rollout(rollout)
    assert len(flat) == rollout.steps and set(flat.obs) == set(SPACE.spaces)


@pytest.mark.parametrize(("algo", "env"), [("fqi", "bitflip"), ("qtopt", "point_mass_goal")])
def test_fitted_q_with_her_resumes_bit_identically_from_a_weights_only_state(algo, env):
    overrides = [f"algo={algo}", f"env={env}", "algo.her.strategy=future", "algo.learning_starts=0"]
    if algo == "fqi":
        overrides += ["env.n_bits=4", "algo.N=32", "algo.num_envs=2", "algo.K=1", "algo.S=2", "algo.batch_size=16"]
    first = build(make_config(*overrides))
    for step in range(3):
        first.iterate(step)
    second = build(make_config(*overrides))
    second.load_state_dict(saved_and_loaded(first.state_dict()))
    for step in range(3, 6):
        assert first.iterate(step) == second.iterate(step)
    for a, b in zip(first.q.parameters(), second.q.parameters()):
        assert torch.equal(a, b)


FQI_BITFLIP = ["algo=fqi", "env=bitflip", "env.n_bits=4", "algo.N=32", "algo.num_envs=2", "algo.K=1", "algo.S=2",
               "algo.batch_size=16", "algo.learning_starts=0", "eval.every=64", "eval.episodes=4",
               "checkpoint.every=64", "log.progress=none", "log.every=32"]


def test_a_run_on_a_goal_env_resumed_from_its_checkpoint_equals_a_straight_run(tmp_path):
    runner.train(make_config(*FQI_BITFLIP, "total_timesteps=128"), tmp_path / "resumed")
    runner.train(make_config(*FQI_BITFLIP, "total_timesteps=256"), tmp_path / "resumed")
    runner.train(make_config(*FQI_BITFLIP, "total_timesteps=256"), tmp_path / "straight")
    a, b = read_scalars(tmp_path / "straight"), read_scalars(tmp_path / "resumed")
    a.pop("charts/SPS"), b.pop("charts/SPS")
    assert a == b and "charts/success_rate" in a
    summaries = [json.loads((tmp_path / run / runner.SUMMARY_FILE).read_text()) for run in ("straight", "resumed")]
    assert summaries[0]["eval_return_mean"] == summaries[1]["eval_return_mean"]


def test_evaluation_episodes_report_success_from_the_step_that_ends_them():
    env = make_vec_env(make_config("env=bitflip", "env.n_bits=3").env, 6)
    batch = sample_trajectories(env, lambda obs: np.zeros(len(obs["observation"]), np.int64), seed=0)
    # flipping bit 0 again and again succeeds only where the target differs in bit 0 alone
    assert batch.successes is not None and batch.successes.dtype == bool
    np.testing.assert_array_equal(batch.successes, batch.episode_returns == 0)
    assert set(batch.obs) == {"observation", "achieved_goal", "desired_goal"}
    assert batch.obs["observation"].shape[1:] == (6, 3) and batch.final_obs["observation"].shape == (6, 3)


def test_an_env_without_success_reports_none():
    env = make_vec_env(make_config("env=cartpole").env, 2)
    assert sample_trajectories(env, lambda obs: np.zeros(len(obs), np.int64), seed=0).successes is None


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["algo.her.strategy=later"], "algo.her.strategy='later' is not allowed: null or one of future, final, episode"),
        (["algo.her.k=0"], "algo.her.k=0 is not allowed: an integer >= 1"),
        (["env=cartpole", "algo.her.strategy=future"], "algo.her.strategy='future' is not allowed: null for cartpole"),
    ],
)
def test_bad_her_settings_are_one_config_error(overrides, line):
    with pytest.raises(ConfigError) as err:
        build(make_config("algo=fqi", "env=bitflip", *overrides))
    assert str(err.value).startswith(line) and "\n" not in str(err.value)


def test_a_gymnasium_robotics_goal_env_trains_with_her_through_the_robotics_extra(tmp_path):
    """FetchReach (MuJoCo) registers when rlrun first needs its id; its Dict observations, float64
    goals and is_success flow through qtopt with HER to eval/success_rate."""
    pytest.importorskip("gymnasium_robotics", reason="the robotics extra is not installed")
    cfg = make_config("algo=qtopt", "env=fetch_reach", "algo.her.strategy=future", "algo.N=50", "algo.num_envs=1",
                      "algo.batch_size=16", "algo.learning_starts=0", "algo.K=1", "algo.S=1", "total_timesteps=50",
                      "eval.every=50", "eval.episodes=1", "checkpoint.every=0", "log.progress=none")
    runner.train(cfg, tmp_path)
    summary = json.loads((tmp_path / runner.SUMMARY_FILE).read_text())
    assert summary["steps"] >= 50 and summary["success_rate"] in (0.0, 1.0)
    assert summary["eval_return_mean"] <= 0  # -1 per step away from the goal, 0 on it
