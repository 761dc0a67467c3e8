"""Env settings that cannot run are refused with one line naming the key; env ids never import code unasked."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

from rlrun import envs
from rlrun.config import ConfigError, config_dir
from tests.conftest import make_config

ENVS = sorted(p.stem for p in (Path(config_dir()) / "env").glob("*.yaml"))


class Fragile(gym.Env):
    """An env that fails where `fail_at` says: "build", "reset" or "step"."""

    def __init__(self, fail_at=None, observation_space=None):
        if fail_at == "build":
            raise RuntimeError("broken at build")
        self.fail_at = fail_at
        self.observation_space = observation_space or gym.spaces.Box(-1, 1, (2,))
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.fail_at == "reset":
            raise RuntimeError("broken at reset")
        return self.observation_space.sample(), {}

    def step(self, action):
        if self.fail_at == "step":
            raise RuntimeError("broken at step")
        return self.observation_space.sample(), 0.0, True, False, {}


TEST_IDS = {
    "rlrun_test/Fragile-v0": {},
    "rlrun_test/BrokenByDefault-v0": {"fail_at": "step"},
    "rlrun_test/DictOfBoxes-v0": {"observation_space": gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (3,))})},
    "rlrun_test/DictWithDiscrete-v0": {"observation_space": gym.spaces.Dict({"a": gym.spaces.Discrete(3)})},
}


@pytest.fixture(scope="module", autouse=True)
def test_envs_registered():
    for env_id, kwargs in TEST_IDS.items():
        gym.register(env_id, entry_point=Fragile, kwargs=kwargs)
    yield
    for env_id in TEST_IDS:
        del gym.registry[env_id]


def refusal(*overrides: str, build=envs.check_env) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        build(make_config(*overrides).env)
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    "overrides, key, allowed",
    [
        (["env.max_episode_steps=0"], "env.max_episode_steps", "null or an integer >= 1"),
        (["env.max_episode_steps=-5"], "env.max_episode_steps", "null or an integer >= 1"),
        (["env=frozenlake", "env.map_name=9x9"], "env.map_name", "one of 4x4, 8x8, or null"),
        (["env=frozenlake", "env.kwargs={map_name: 9x9}"], "env.kwargs.map_name", "one of 4x4, 8x8, or null"),
        (["env.kwargs=notadict"], "env.kwargs", "null or a mapping"),
        (["env=gym", "env.id=Blackjack-v1"], "env.id", "Box, Discrete, or Dict of Box (Blackjack-v1 has Tuple(Discrete(32)"),
        (["env=pendulum", "+env.g=abc"], "env.g", "a number, as Pendulum-v1's g (default 10.0)"),
        (["env=taxi", "env.is_rainy=maybe"], "env.is_rainy", "true or false, as Taxi-v4's is_rainy (default False)"),
        (["env=taxi", "env.kwargs={is_rainy: 1}"], "env.kwargs.is_rainy", "true or false"),
        (["+env.foo=1"], "env.foo", "a keyword argument that CartPole-v1 takes (sutton_barto_reward, render_mode)"),
        (["env.allow_import=maybe"], "env.allow_import", "true or false"),
        (["env=gym", "env.id=NoSuch-v0"], "env.id", "a registered gymnasium id"),
        (["env=gym", "env.id=rlrun_test/DictWithDiscrete-v0"], "env.id", "(rlrun_test/DictWithDiscrete-v0 has Dict(a: Discrete(3)))"),
    ],
)
def test_a_setting_that_cannot_run_is_one_line_naming_its_key(overrides, key, allowed):
    err = refusal(*overrides)
    assert err.key == key and allowed in err.allowed, str(err)


def test_a_value_of_the_right_type_that_fails_at_the_first_step_is_named():
    err = refusal("env=pendulum", "+env.g=null")
    assert err.key == "env.g" and err.allowed.startswith("a value with which Pendulum-v1 can take a step (TypeError:")


@pytest.mark.parametrize("stage, doing", [("build", "be built"), ("reset", "reset"), ("step", "take a step")])
def test_each_first_stage_failure_names_the_setting_the_user_changed(stage, doing):
    err = refusal("env=gym", "env.id=rlrun_test/Fragile-v0", f"env.kwargs={{fail_at: {stage}}}")
    assert err.key == "env.kwargs.fail_at" and err.value == stage
    assert err.allowed == f"a value with which rlrun_test/Fragile-v0 can {doing} (RuntimeError: broken at {stage})"


def test_an_env_failing_with_its_own_defaults_is_named_by_its_id():
    err = refusal("env=gym", "env.id=rlrun_test/BrokenByDefault-v0")
    assert err.key == "env.id" and "can take a step with its default settings (RuntimeError" in err.allowed


def test_settings_that_run_give_the_spaces():
    obs, act = envs.check_env(make_config().env)
    assert obs.shape == (4,) and act == gym.spaces.Discrete(2)
    obs, _ = envs.check_env(make_config("env=gym", "env.id=rlrun_test/DictOfBoxes-v0").env)
    assert isinstance(obs, gym.spaces.Dict)
    obs, _ = envs.check_env(make_config("env=mountaincar", "+env.goal_velocity=0.5").env)  # an int default takes a float
    assert obs.shape == (2,)


@pytest.mark.parametrize("env", ENVS)
def test_the_documented_kwargs_form_composes_on_every_env(env):
    cfg = make_config(f"env={env}", "env.id=FrozenLake-v1", "env.kwargs={map_name: 8x8, is_slippery: false}")
    assert envs.make_kwargs(cfg.env)["map_name"] == "8x8"


def test_kwargs_reach_the_env_and_win_over_the_same_own_key():
    cfg = make_config("env=frozenlake", "env.map_name=4x4", "env.kwargs={map_name: 8x8}")
    assert envs.check_env(cfg.env)[0] == gym.spaces.Discrete(64)
    env = envs.make_env(cfg.env)
    assert env.unwrapped.desc.shape == (8, 8)
    env.close()


def test_a_stored_config_without_the_newer_keys_still_builds():
    stored = OmegaConf.create({"env": {"name": "cartpole", "id": "CartPole-v1", "max_episode_steps": 20}})
    env = envs.make_vec_env(stored.env, 2)
    assert env.num_envs == 2
    env.close()
    assert envs.check_env(stored.env)[1] == gym.spaces.Discrete(2)


def write_module(folder: Path, name: str, body: str = "") -> Path:
    marker = folder / f"{name}.imported"
    (folder / f"{name}.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n{body}")
    return marker


@pytest.mark.parametrize(
    "build", [envs.check_env, envs.make_env, lambda cfg: envs.make_vec_env(cfg, 2)], ids=["check", "make", "make_vec"]
)
def test_an_id_naming_a_module_is_refused_before_anything_is_imported(build, tmp_path, monkeypatch):
    marker = write_module(tmp_path, "evilmod")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = refusal("env=gym", "env.id=evilmod:Evil-v0", build=build)
    assert err.key == "env.id" and "env.allow_import=true" in err.allowed
    assert not marker.exists() and "evilmod" not in sys.modules


def test_allow_import_imports_the_named_module_and_builds_what_it_registers(tmp_path, monkeypatch):
    name = "rlrun_test_registering_module"
    registers = 'import gymnasium\ngymnasium.register("rlrun_test/Imported-v0", entry_point="tests.test_envs:Fragile")\n'
    marker = write_module(tmp_path, name, registers)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cfg = make_config("env=gym", f"env.id={name}:rlrun_test/Imported-v0", "env.allow_import=true")
        assert envs.check_env(cfg.env)[0].shape == (2,) and marker.exists()
    finally:
        gym.registry.pop("rlrun_test/Imported-v0", None)
        sys.modules.pop(name, None)


def test_a_module_that_fails_to_import_is_one_line():
    cfg = make_config("env=gym", "env.id=rlrun_no_such_module:X-v0", "env.allow_import=true")
    with pytest.raises(ConfigError, match="an id whose module imports .No module named 'rlrun_no_such_module'"):
        envs.make_env(cfg.env)


def test_describe_space_names_nested_spaces():
    space = gym.spaces.Dict({"o": gym.spaces.Box(0, 1, (3,)), "t": gym.spaces.Tuple([gym.spaces.Discrete(2)])})
    assert envs.describe_space(space) == "Dict(o: Box(3,), t: Tuple(Discrete(2)))"
    assert envs.flat_obs_dim(gym.spaces.Box(0, 1, (2, 3), dtype=np.float32)) == 6
