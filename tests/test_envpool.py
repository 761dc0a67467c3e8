"""env.backend=envpool (rlrun.envpool_vec): the adapter's autoreset, terminated/truncated and seeding
against a fake pool that behaves as envpool does (so CI checks them without envpool), the refusals,
and, where envpool is installed, the same returns as gymnasium's envs for the same actions."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

from rlrun import envs
from rlrun.config import ConfigError
from rlrun.data import RolloutCollector, sample_trajectories
from rlrun.envpool_vec import TERMINAL, EnvPoolVecEnv
from tests.conftest import make_config, run_cli

LIMIT = 6  # the walk's time limit
GOAL = 3  # the walk's terminal position


class Walk(gym.Env):
    """A walk on the integers from a random start in [-2, 2]: action a moves it by a - 1; reaching GOAL
    is terminal. The reward is the position / 10, so returns tell episodes and steps apart."""

    observation_space = gym.spaces.Box(-100.0, 100.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = int(self.np_random.integers(-2, 3))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += int(action) - 1
        return np.array([self.x], np.float32), self.x / 10, self.x >= GOAL, False, {}


def walk_terminal(obs: np.ndarray) -> np.ndarray:
    return obs[:, 0] >= GOAL


class FakePool:
    """The walk as envpool runs an env: seeds fixed at construction (env i from seed + i), reset(seed=...)
    ignored, NEXT_STEP autoreset whose reset step has reward 0 and no flags, and a terminal state on
    the time limit's step reported as truncated only."""

    built = 0

    def __init__(self, seed: int, num_envs: int):
        FakePool.built += 1
        self.envs = [Walk() for _ in range(num_envs)]
        self.seeds = [seed + i for i in range(num_envs)]
        self.elapsed = np.zeros(num_envs, dtype=int)
        self.done = np.zeros(num_envs, dtype=bool)
        self.terminals_on_the_limit = 0  # steps that reached GOAL on the time limit's step

    def reset(self, env_id=None, *, seed=None):
        obs = [env.reset(seed=s)[0] for env, s in zip(self.envs, self.seeds)]
        self.seeds = [None] * len(self.envs)  # later resets draw on from each env's generator
        self.elapsed[:], self.done[:] = 0, False
        return np.stack(obs), {"env_id": np.arange(len(self.envs))}

    def step(self, actions):
        assert actions.dtype == np.int32 and actions.shape == (len(self.envs),)
        out = []
        for i, (env, action) in enumerate(zip(self.envs, actions)):
            if self.done[i]:
                self.done[i], self.elapsed[i] = False, 0
                out.append((env.reset()[0], 0.0, False, False))
                continue
            obs, reward, terminal, _, _ = env.step(action)
            self.elapsed[i] += 1
            truncated = self.elapsed[i] >= LIMIT
            self.done[i] = terminal or truncated
            self.terminals_on_the_limit += int(terminal and truncated)
            out.append((obs, reward, self.done[i] and not truncated, truncated))
        obs, rewards, terminated, truncated = (np.array(column) for column in zip(*out))
        return obs, rewards.astype(np.float32), terminated, truncated, {"elapsed_step": self.elapsed.copy()}

    def close(self):
        pass


def fake_envpool(num_envs: int, pools: list | None = None) -> EnvPoolVecEnv:
    """The adapter over fake pools; each pool it builds is appended to `pools`."""
    pools = [] if pools is None else pools

    def make_pool(seed: int) -> FakePool:
        pools.append(FakePool(seed, num_envs))
        return pools[-1]

    return EnvPoolVecEnv(make_pool, num_envs, Walk.observation_space, Walk.action_space, walk_terminal)


def gymnasium_walk(num_envs: int) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([lambda: gym.wrappers.TimeLimit(Walk(), LIMIT) for _ in range(num_envs)])


def goal_on_the_last_step(x: int) -> list[int]:
    """Actions that stand still from x, then reach GOAL on the time limit's step."""
    return [1] * (LIMIT - (GOAL - x)) + [2] * (GOAL - x)


def test_the_fake_pool_reports_a_terminal_on_the_time_limit_step_as_truncated_as_envpool_does():
    pool = FakePool(seed=0, num_envs=1)
    for action in goal_on_the_last_step(int(pool.reset()[0][0, 0])):
        obs, _, terminated, truncated, _ = pool.step(np.array([action], np.int32))
    assert obs[0, 0] == GOAL and not terminated[0] and truncated[0]


def test_a_terminal_state_on_the_time_limit_step_is_terminated_and_the_next_step_is_the_reset():
    env = fake_envpool(1)
    (x,), _ = env.reset(seed=0)
    for t, action in enumerate(goal_on_the_last_step(int(x[0]))):
        obs, reward, terminated, truncated, info = env.step([action])
        assert terminated[0] == (t == LIMIT - 1) and truncated[0] == (t == LIMIT - 1)
    assert obs[0, 0] == GOAL and reward[0] == np.float32(GOAL / 10) and info == {}  # envpool gives float32 rewards
    obs, reward, terminated, truncated, _ = env.step([2])  # its action is ignored: the env resets
    assert -2 <= obs[0, 0] <= 2 and reward[0] == 0 and not terminated[0] and not truncated[0]


def test_a_time_limit_cut_away_from_the_goal_stays_a_truncation():
    env = fake_envpool(1)
    env.reset(seed=3)
    for _ in range(LIMIT):
        _, _, terminated, truncated, _ = env.step([0])  # walk away from the goal
    assert truncated[0] and not terminated[0]


def replay(table: np.ndarray):
    """A policy that plays the rows of `table` in turn, whatever it observes."""
    rows = iter(table)
    return lambda obs: next(rows)


def walk_actions(steps: int, num_envs: int) -> np.ndarray:
    # biased towards the goal, so episodes end on the goal, on the time limit, and on both at once
    return np.random.default_rng(1).choice(3, size=(steps, num_envs), p=[0.2, 0.3, 0.5])


def test_rollouts_match_gymnasiums_vector_env_for_the_same_actions():
    num_envs, T = 8, 16
    table = walk_actions(4 * T, num_envs)
    rollouts, pools = [], []
    for env in (fake_envpool(num_envs, pools), gymnasium_walk(num_envs)):
        collector, policy = RolloutCollector(env, seed=7), replay(table)
        rollouts.append([collector.collect(lambda obs, policy=policy: (policy(obs),) * 2, T) for _ in range(4)])
    for ours, theirs in zip(*rollouts):
        for field in ("obs", "actions", "rewards", "terminated", "truncated", "valid", "episode_returns"):
            np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field), err_msg=field)
        np.testing.assert_array_equal(ours.episode_lengths, theirs.episode_lengths)
        assert ours.terminated.any() and ours.truncated.any()
    assert pools[0].terminals_on_the_limit  # the case envpool reports differently came up, and came out right


def test_sample_trajectories_match_gymnasiums_vector_env_and_reseed_each_batch():
    num_envs = 16
    table = walk_actions(LIMIT + 1, num_envs)
    batches = []
    for env in (fake_envpool(num_envs), gymnasium_walk(num_envs)):
        batches.append(sample_trajectories(env, replay(table), seed=11))
    ours, theirs = batches
    for field in ("obs", "rewards", "terminated", "truncated", "valid", "final_obs", "episode_returns"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field), err_msg=field)
    assert ours.terminated.any() and ours.truncated.any()


def test_reset_with_a_seed_builds_a_pool_of_that_seed_and_without_one_resets_the_pool():
    env = fake_envpool(4)
    first, _ = env.reset(seed=5)
    built = FakePool.built
    again, _ = env.reset(seed=5)
    np.testing.assert_array_equal(first, again)
    assert FakePool.built == built + 1
    env.reset()
    assert FakePool.built == built + 1
    others = [env.reset(seed=seed)[0] for seed in range(20, 30)]
    assert any(not np.array_equal(first, other) for other in others)


def test_a_checkpoint_leaves_the_pool_out_and_a_resumed_collector_starts_new_episodes():
    env = fake_envpool(3)
    collector = RolloutCollector(env, seed=0)
    collector.collect(lambda obs: (np.full(3, 2),) * 2, LIMIT - 2)
    state = collector.state_dict()
    assert "env" not in state and collector.episode_length.max() > 0
    resumed = RolloutCollector(fake_envpool(3), seed=99)
    resumed.load_state_dict(state)
    assert not resumed.resetting.any() and not resumed.episode_length.any() and not resumed.episode_return.any()
    rollout = resumed.collect(lambda obs: (np.full(3, 1),) * 2, LIMIT)
    assert rollout.valid.all() and rollout.truncated[-1].all()  # LIMIT steps: new episodes, not the saved ones


@pytest.mark.parametrize(
    ("overrides", "allowed"),
    [
        (["env.backend=pool"], "gymnasium or envpool"),
        (["env=taxi", "env.backend=envpool"], "gymnasium for env.id=Taxi-v4 (envpool runs CartPole-v0, CartPole-v1,"),
        (["env=mountaincar", "+env.goal_velocity=0.1", "env.backend=envpool"], "gymnasium with env.goal_velocity"),
        (["env=pendulum", "env.kwargs={g: 9.0}", "env.backend=envpool"], "gymnasium with env.kwargs.g"),
        (["task=pendulum_dynamics", "env.backend=envpool"], "gymnasium with a task distribution"),
    ],
)
def test_what_envpool_cannot_run_is_refused_naming_env_backend(overrides, allowed, monkeypatch):
    monkeypatch.setattr(envs.importlib.util, "find_spec", lambda name: object())  # as if envpool were installed
    cfg = make_config("algo=ppo", *overrides)
    with pytest.raises(ConfigError) as refused:
        envs.check_env(cfg.env, task_cfg=cfg.get("task"))
    assert refused.value.key == "env.backend" and refused.value.allowed.startswith(allowed)


def test_envpool_not_installed_is_refused_with_the_extra_to_install(monkeypatch):
    real = envs.importlib.util.find_spec
    monkeypatch.setattr(envs.importlib.util, "find_spec", lambda name: None if name == "envpool" else real(name))
    cfg = make_config("algo=ppo", "env=acrobot", "env.backend=envpool")
    for build in (envs.check_env, lambda env_cfg: envs.make_vec_env(env_cfg, 2)):
        with pytest.raises(ConfigError) as refused:
            build(cfg.env)
        assert str(refused.value) == (
            "env.backend='envpool' is not allowed: gymnasium, or envpool once installed: "
            'pip install "rlrun[envpool]" (Python >= 3.11)'
        )


def test_the_default_backend_is_gymnasium_also_for_configs_without_the_key():
    cfg = make_config("env=acrobot")
    assert cfg.env.backend == "gymnasium" and envs.backend(cfg.env) == "gymnasium"
    stored = OmegaConf.create({"name": "acrobot", "id": "Acrobot-v1"})  # a config stored before the key existed
    assert envs.backend(stored) == "gymnasium" and "backend" not in envs.make_kwargs(cfg.env)


def test_the_cli_refuses_an_env_without_an_envpool_counterpart_in_one_line(tmp_cwd):
    proc = run_cli("algo=ppo", "env=taxi", "env.backend=envpool", cwd=tmp_cwd, check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("rlrun: error: env.backend='envpool' is not allowed: gymnasium")


# ---- with envpool itself ----


def state_of(env_id: str, obs: np.ndarray) -> np.ndarray:
    """The gymnasium env's state behind an observation."""
    obs = obs.astype(np.float64)
    if env_id == "Acrobot-v1":
        return np.array([math.atan2(obs[1], obs[0]), math.atan2(obs[3], obs[2]), obs[4], obs[5]])
    if env_id == "Pendulum-v1":
        return np.array([math.atan2(obs[1], obs[0]), obs[2]])
    return obs


class StartFrom(gym.Wrapper):
    """Starts its episode from the state behind a given observation."""

    def __init__(self, env: gym.Env, obs: np.ndarray):
        super().__init__(env)
        self.start = obs

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        self.env.unwrapped.state = state_of(self.env.spec.id, self.start)
        return self.start.copy(), {}


# (gymnasium id, actions): Pendulum's dynamics are gymnasium's below its speed limit, which no torque-free swing reaches
SAME_DYNAMICS = [
    ("CartPole-v1", "random"),
    ("Acrobot-v1", "random"),
    ("MountainCar-v0", "random"),
    ("MountainCarContinuous-v0", "random"),
    ("Pendulum-v1", "zero"),
]


@pytest.mark.parametrize(("env_id", "actions"), SAME_DYNAMICS)
def test_envpool_returns_and_ends_are_gymnasiums_from_the_same_states_with_the_same_actions(env_id, actions):
    pytest.importorskip("envpool")
    num_envs = 8
    cfg = make_config("env=gym", f"env.id={env_id}", "env.backend=envpool").env
    pool = envs.make_vec_env(cfg, num_envs)
    starts, _ = pool.reset(seed=3)
    reference = gym.vector.SyncVectorEnv([lambda i=i: StartFrom(gym.make(env_id), starts[i]) for i in range(num_envs)])
    space, rng = pool.single_action_space, np.random.default_rng(0)
    table = (
        rng.integers(0, space.n, (1000, num_envs))
        if isinstance(space, gym.spaces.Discrete)
        else (rng.uniform(-1, 1, (1000, num_envs, 1)) * (actions == "random")).astype(np.float32)
    )
    batches = []
    for env in (pool, reference):
        batches.append(sample_trajectories(env, replay(table), seed=3))
    ours, theirs = batches
    np.testing.assert_allclose(ours.episode_returns, theirs.episode_returns, rtol=1e-4)
    for field in ("terminated", "truncated", "valid"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field), err_msg=field)
    np.testing.assert_allclose(ours.final_obs, theirs.final_obs, atol=1e-3)


def test_envpool_says_terminated_for_a_terminal_state_on_the_time_limit_step():
    pytest.importorskip("envpool")
    # from seed 3, pushing right ends CartPole on its 8th step: give it a time limit of 8 steps
    cfg = make_config("env=cartpole", "env.backend=envpool", "env.max_episode_steps=8").env
    env = envs.make_vec_env(cfg, 1)
    env.reset(seed=3)
    for _ in range(8):
        obs, _, terminated, truncated, _ = env.step(np.array([1]))
    assert truncated[0] and terminated[0] and TERMINAL["CartPole-v1"](obs)[0]
    env.pool.reset()
    for _ in range(8):
        _, _, raw_terminated, raw_truncated, _ = env.pool.step(np.array([1], np.int32))
    assert raw_truncated[0] and not raw_terminated[0]  # what envpool itself says, mended above


def test_a_short_ppo_run_on_envpool_logs_returns_and_evaluates_on_gymnasium(tmp_cwd):
    pytest.importorskip("envpool")
    run_cli(
        "algo=ppo",
        "env=acrobot",
        "env.backend=envpool",
        "algo.num_envs=8",
        "algo.T=64",
        "algo.minibatch_size=128",
        "env.max_episode_steps=50",
        "total_timesteps=1024",
        "eval.episodes=2",
        "log.progress=none",
        cwd=tmp_cwd,
    )
    (run_dir,) = (tmp_cwd / "outputs").glob("*/*")
    summary = __import__("json").loads((run_dir / "summary.json").read_text())
    assert -50 <= summary["eval_return_mean"] <= 0
