"""Every config combination composes, and every key is documented and validated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from rlrun import config, tasks
from rlrun.algos import specs
from rlrun.config import config_dir
from tests.conftest import make_config

CONFIGS = Path(config_dir())
ENVS = sorted(p.stem for p in (CONFIGS / "env").glob("*.yaml"))
ALGOS = sorted(p.stem for p in (CONFIGS / "algo").glob("*.yaml"))
ENV_OVERRIDES = {"gym": ["env.id=CartPole-v1"]}
TASKS = sorted(p.stem for p in (CONFIGS / "task").glob("*.yaml"))
TASK_ALGOS = ["reinforce", "actor_critic", "ppo", "fqi", "qtopt"]  # those that take Box observations


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("env", ENVS)
def test_every_env_algo_pair_composes_and_resolves(env, algo):
    cfg = make_config(f"env={env}", f"algo={algo}", *ENV_OVERRIDES.get(env, []))
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert container["algo"]["name"] == algo
    assert container["env"]["name"]


@pytest.mark.parametrize("algo", TASK_ALGOS)
@pytest.mark.parametrize("task", TASKS)
def test_every_task_preset_composes_with_its_env_and_each_algorithm(task, algo):
    preset = OmegaConf.load(CONFIGS / "task" / f"{task}.yaml")
    (env,) = (choice["override /env"] for choice in preset.defaults)
    observe = "onehot" if preset.task.named is not None else "params"
    cfg = make_config(f"task={task}", f"algo={algo}", f"task.observe={observe}")
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert container["algo"]["name"] == algo
    assert container["env"] == OmegaConf.to_container(OmegaConf.load(CONFIGS / "env" / f"{env}.yaml"))
    assert container["task"] == {**OmegaConf.to_container(preset.task), "observe": observe}
    tasks.check(cfg.task)


def test_a_run_without_a_task_has_no_task_key():
    assert "task" not in make_config()


def test_required_groups_are_present():
    assert {"cartpole", "acrobot", "mountaincar", "pendulum", "mountaincar_continuous", "frozenlake", "gym"} <= set(
        ENVS
    )
    assert "reinforce" in ALGOS


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algo_key_has_a_rule_and_every_rule_a_key(algo):
    cfg = make_config(f"algo={algo}")
    keys = {k for k in cfg.algo if k != "name"}
    assert keys == set(specs.get(algo).rules), "algo yaml keys and its rules in rlrun.algos.specs differ"


@pytest.mark.parametrize("algo", ALGOS)
def test_defaults_pass_validation(algo):
    cfg = make_config(f"algo={algo}")
    specs.validate(cfg)


def test_every_top_level_key_has_a_rule():
    cfg = make_config()
    leaves = set()
    for key in cfg:
        if key in ("env", "algo", "hydra"):
            continue
        node = cfg[key]
        leaves |= {f"{key}.{sub}" for sub in node} if OmegaConf.is_dict(node) else {key}
    assert leaves == set(config.RULES)


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_yaml_key_has_a_comment(path):
    """One comment line per key: on the key's line, or on the line right above it."""
    lines = path.read_text().splitlines()
    in_block = False
    for i, line in enumerate(lines):
        if re.match(r"^(hydra|defaults):", line):
            in_block = True  # Hydra's own settings and the defaults list follow Hydra's docs
            continue
        if in_block and (line.startswith((" ", "-")) or not line.strip()):
            continue
        in_block = False
        if re.match(r"^\s*[A-Za-z_][\w.]*\s*:", line) and not line.lstrip().startswith("#"):
            above = lines[i - 1].strip() if i else ""
            assert "#" in line or above.startswith("#"), f"{path.name}:{i + 1} has no comment: {line!r}"


def test_no_config_sets_hydra_mode():
    """rlrun.cli skips Hydra's composition that only reads hydra.mode on that promise."""
    def keys(node, prefix=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield f"{prefix}{key}"
                yield from keys(value, f"{prefix}{key}.")

    setting = [path for path in Path(config_dir()).rglob("*.yaml") if "hydra.mode" in keys(yaml.safe_load(path.read_text()))]
    assert not setting
