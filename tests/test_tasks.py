"""Task distributions: reproducible sampling, parameters that reach the env and (when asked) the observation,
fixed evaluation tasks, and the presets of configs/task/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from omegaconf import OmegaConf

import rlrun.gym_envs  # noqa: F401  (registers rlrun/PointMass-v0)
from rlrun import tasks
from rlrun.config import ConfigError, config_dir
from rlrun.state import load_plain_state, plain_state

PRESETS = Path(config_dir()) / "task"
PRESET_NAMES = sorted(p.stem for p in PRESETS.glob("*.yaml"))


def preset(name: str, **changes):
    cfg = OmegaConf.load(PRESETS / f"{name}.yaml").task
    for key, value in changes.items():
        cfg[key] = value
    return cfg


def preset_env_id(name: str) -> str:
    """The gymnasium id of the env a preset selects in its defaults list."""
    (override,) = OmegaConf.load(PRESETS / f"{name}.yaml").defaults
    return OmegaConf.load(PRESETS.parent / "env" / f"{override['override /env']}.yaml").id


def drawn_tasks(env: gym.Env, resets: int, seed: int | None = None) -> list[dict[str, float]]:
    first = [env.reset(seed=seed)[1]["task"]]
    return first + [env.reset()[1]["task"] for _ in range(resets - 1)]


def cartpole(name: str = "cartpole_dynamics", seed: int = 0, slot: int = 0, **changes) -> tasks.TaskWrapper:
    return tasks.wrap(gym.make("CartPole-v1"), preset(name, **changes), seed=seed, slot=slot)


def test_sampling_is_reproducible_from_seed_and_slot_and_differs_across_them():
    same = drawn_tasks(cartpole(seed=1, slot=2), 5)
    assert drawn_tasks(cartpole(seed=1, slot=2), 5) == same
    assert drawn_tasks(cartpole(seed=1, slot=3), 5) != same
    assert drawn_tasks(cartpole(seed=2, slot=2), 5) != same
    assert len({tuple(task.values()) for task in same}) == 5  # a new task every episode


def test_a_seeded_reset_restarts_the_task_sequence():
    env = cartpole()
    assert drawn_tasks(env, 4, seed=7) == drawn_tasks(env, 4, seed=7) != drawn_tasks(env, 4, seed=8)


def test_a_restored_env_draws_the_same_next_tasks():
    env = cartpole()
    drawn_tasks(env, 3, seed=0)
    state = plain_state(env)
    restored = cartpole()
    load_plain_state(restored, state)
    assert restored.task == env.task
    assert drawn_tasks(restored, 4) == drawn_tasks(env, 4)


def test_training_tasks_lie_in_the_train_ranges():
    ranges = preset("cartpole_dynamics").ranges
    for task in drawn_tasks(cartpole(), 50, seed=0):
        for name, value in task.items():
            low, high = ranges[name].train
            assert low <= value <= high


def test_cartpole_derived_quantities_follow_the_parameters():
    env = cartpole()
    for _ in range(5):
        _, info = env.reset()
        pole, task = env.unwrapped, info["task"]
        assert (pole.length, pole.masspole, pole.force_mag) == (task["length"], task["masspole"], task["force_mag"])
        assert pole.total_mass == pole.masspole + pole.masscart
        assert pole.polemass_length == pole.masspole * pole.length


def test_cartpole_dynamics_change_with_the_task():
    """Same initial state and action, different forces: different next states."""
    weak, strong = ({"length": 0.5, "masspole": 0.1, "force_mag": force, "init_range": 0.05} for force in (5.0, 15.0))
    next_states = []
    for params in (weak, strong):
        env = tasks.wrap_fixed(gym.make("CartPole-v1"), preset("cartpole_dynamics"), tasks.Task(params))
        env.reset(seed=0)
        next_states.append(env.step(1)[0])
    assert not np.allclose(*next_states)


def test_cartpole_initial_states_follow_init_range():
    cfg = preset("cartpole_dynamics")
    defaults = {"length": 0.5, "masspole": 0.1, "force_mag": 10.0}
    still = tasks.wrap_fixed(gym.make("CartPole-v1"), cfg, tasks.Task({**defaults, "init_range": 0.0}))
    np.testing.assert_array_equal(still.reset(seed=0)[0], np.zeros(4))
    wide = tasks.wrap_fixed(gym.make("CartPole-v1"), cfg, tasks.Task({**defaults, "init_range": 0.2}))
    starts = np.array([wide.reset(seed=seed)[0] for seed in range(20)])
    assert np.abs(starts).max() > 0.05 and np.abs(starts).max() <= 0.2  # beyond CartPole's default +-0.05


def test_pendulum_and_point_mass_take_their_parameters():
    pendulum = tasks.wrap(gym.make("Pendulum-v1"), preset("pendulum_dynamics"), seed=0, slot=0)
    _, info = pendulum.reset(seed=0)
    assert (pendulum.unwrapped.g, pendulum.unwrapped.m, pendulum.unwrapped.l) == tuple(info["task"].values())
    point = tasks.wrap(gym.make("rlrun/PointMass-v0"), preset("point_goals"), seed=0, slot=0)
    _, info = point.reset(seed=0)
    goal = np.array([info["task"]["goal_x"], info["task"]["goal_y"]], dtype=np.float32)
    np.testing.assert_array_equal(point.unwrapped.goal, goal)
    position, reward, *_ = point.step(np.zeros(2, dtype=np.float32))
    assert reward == pytest.approx(-np.linalg.norm(position - goal), rel=1e-6)


def test_parameters_reach_the_observation_exactly_when_observe_is_params():
    blind, seeing = cartpole(observe="none"), cartpole(observe="params")
    n_params = len(preset("cartpole_dynamics").ranges)
    assert blind.observation_space.shape == (4,) and seeing.observation_space.shape == (4 + n_params,)
    (blind_obs, info), (seeing_obs, _) = blind.reset(seed=0), seeing.reset(seed=0)
    np.testing.assert_array_equal(blind_obs, seeing_obs[:4])
    np.testing.assert_array_equal(blind_obs, blind.unwrapped.state.astype(np.float32))
    ranges = preset("cartpole_dynamics").ranges
    low, high = (np.array([ranges[name].train[i] for name in info["task"]]) for i in (0, 1))
    expected = (np.array(list(info["task"].values())) - (low + high) / 2) / ((high - low) / 2)
    np.testing.assert_allclose(seeing_obs[4:], expected, rtol=1e-6)
    assert np.all(np.abs(seeing_obs[4:]) <= 1)  # train tasks span [-1, 1]
    step_obs = seeing.step(0)[0]
    np.testing.assert_array_equal(step_obs[4:], seeing_obs[4:])
    assert step_obs in seeing.observation_space


def test_held_out_parameters_are_observed_outside_the_train_span():
    cfg = preset("cartpole_dynamics", observe="params")
    for task in tasks.eval_tasks(cfg)["test"]:
        obs, _ = tasks.wrap_fixed(gym.make("CartPole-v1"), cfg, task).reset(seed=0)
        assert np.all(np.abs(obs[4:]) > 1)


def test_onehot_indexes_the_named_train_task_and_is_zero_for_a_held_out_one():
    cfg = preset("cartpole_variants", observe="onehot")
    train_names = list(cfg.named.train)
    env = tasks.wrap(gym.make("CartPole-v1"), cfg, seed=0, slot=0)
    assert env.observation_space.shape == (4 + len(train_names),)
    seen = set()
    for _ in range(20):
        obs, _ = env.reset()
        expected = np.eye(len(train_names))[train_names.index(env.task.name)]
        np.testing.assert_array_equal(obs[4:], expected)
        assert env.task.params == dict(cfg.named.train[env.task.name])
        seen.add(env.task.name)
    assert seen == set(train_names)
    (held_out,) = tasks.eval_tasks(cfg)["test"]
    obs, _ = tasks.wrap_fixed(gym.make("CartPole-v1"), cfg, held_out).reset(seed=0)
    np.testing.assert_array_equal(obs[4:], np.zeros(len(train_names)))


def test_evaluation_tasks_are_the_same_on_every_call_and_held_out_from_training():
    cfg = preset("point_goals")
    first = tasks.eval_tasks(cfg)
    assert tasks.eval_tasks(preset("point_goals")) == first
    assert len(first["train"]) == len(first["test"]) == cfg.eval_tasks
    for task in first["train"]:
        assert all(-0.5 <= v <= 0.5 for v in task.params.values())
    for task in first["test"]:
        assert all(abs(v) >= 0.5 for v in task.params.values())
    named = tasks.eval_tasks(preset("cartpole_variants"))
    assert [task.name for task in named["train"]] == ["short_light", "long_heavy", "weak_push"]
    assert [task.name for task in named["test"]] == ["mid_heavy"]


def test_an_env_fixed_to_a_task_keeps_it_every_episode():
    task = tasks.eval_tasks(preset("pendulum_dynamics"))["test"][0]
    env = tasks.wrap_fixed(gym.make("Pendulum-v1"), preset("pendulum_dynamics"), task)
    assert drawn_tasks(env, 3, seed=0) == [task.params] * 3
    assert env.task == task


def test_vectorised_slots_draw_their_own_tasks():
    cfg = preset("cartpole_dynamics", observe="params")
    vec = gym.vector.SyncVectorEnv([lambda i=i: tasks.wrap(gym.make("CartPole-v1"), cfg, seed=0, slot=i) for i in range(3)])
    obs, info = vec.reset(seed=0)
    assert obs.shape == (3, 4 + len(cfg.ranges)) and len(set(info["task"]["length"])) == 3
    assert [t.params["length"] for t in vec.get_attr("task")] == list(info["task"]["length"])


@pytest.mark.filterwarnings("ignore:.*(unwrapped version|infinity|symmetric and normalized)")  # the checker's notes on wrapped classic envs
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_are_valid_and_apply_to_the_env_they_select(name):
    cfg = preset(name)
    assert set(cfg) == set(tasks.RULES)
    tasks.check(cfg)
    env = tasks.wrap(gym.make(preset_env_id(name)), cfg, seed=0, slot=0)
    for task in [t for split in tasks.eval_tasks(cfg).values() for t in split]:
        tasks.wrap_fixed(gym.make(preset_env_id(name)), cfg, task).reset(seed=0)
    check_env(env, skip_render_check=True)


def test_required_presets_exist():
    assert {"cartpole_dynamics", "pendulum_dynamics", "point_goals", "cartpole_variants"} <= set(PRESET_NAMES)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"observe": "all"}, "task.observe"),
        ({"observe": "onehot"}, "task.observe"),
        ({"ranges": {"length": {"train": [0.3, 0.7], "test": [0.4, 0.6]}}}, "task.ranges"),
        ({"ranges": {"length": {"train": [0.7, 0.3]}}}, "task.ranges"),
        ({"named": {"train": {"a": {"length": 0.5}}, "test": {"b": {"length": 0.6}}}}, "task.ranges"),
        ({"eval_tasks": None}, "task.eval_tasks"),
        ({"eval_tasks": 0}, "task.eval_tasks"),
    ],
)
def test_bad_task_configs_name_the_key(changes, key):
    with pytest.raises(ConfigError) as err:
        tasks.check(preset("cartpole_dynamics", **changes))
    assert err.value.key == key


def test_bad_named_lists_are_refused():
    mismatched = {"train": {"a": {"length": 0.5}}, "test": {"b": {"masspole": 0.2}}}
    with pytest.raises(ConfigError, match="task.named"):
        tasks.check(preset("cartpole_variants", named=mismatched))
    with pytest.raises(ConfigError, match="task.eval_tasks"):
        tasks.check(preset("cartpole_variants", eval_tasks=5))


def test_parameters_the_env_does_not_have_or_cannot_take_are_refused():
    with pytest.raises(ConfigError, match="parameters of PendulumEnv"):
        tasks.wrap(gym.make("Pendulum-v1"), preset("cartpole_dynamics"), seed=0, slot=0)
    off_arena = preset("point_goals", ranges={"goal_x": {"train": [-0.5, 0.5], "test": [-2.0, 2.0]}})
    with pytest.raises(ConfigError, match=r"task.ranges.goal_x=-2.0"):
        tasks.wrap(gym.make("rlrun/PointMass-v0"), off_arena, seed=0, slot=0)
    with pytest.raises(ConfigError, match="an env of"):
        tasks.wrap(gym.make("Acrobot-v1"), preset("cartpole_dynamics"), seed=0, slot=0)
    base = gym.make("CartPole-v1")
    as_dict = gym.wrappers.TransformObservation(base, lambda obs: {"x": obs}, gym.spaces.Dict({"x": base.observation_space}))
    with pytest.raises(ConfigError, match="task.observe='params'"):
        tasks.wrap(as_dict, preset("cartpole_dynamics", observe="params"), seed=0, slot=0)


def test_task_module_imports_without_torch():
    code = "import sys, rlrun.tasks, rlrun.gym_envs; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
