"""The `rlrun` command end to end: a run's artefacts and event file, determinism, bad input."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import pytest

from rlrun import cli, runner
from rlrun.build import build
from rlrun.config import ConfigError, config_dir
from tests.conftest import TINY, make_config, read_scalars, run_cli

EXPECTED_TAGS = {
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/SPS",
    "eval/episodic_return",
    "losses/policy_loss",
    "losses/entropy",
    "losses/value_loss",
}


def only_run_dir(cwd: Path) -> Path:
    runs = list((cwd / "outputs").glob("*/*"))
    assert len(runs) == 1, runs
    return runs[0]


def test_cli_run_writes_a_complete_run_with_the_expected_tags(tmp_cwd):
    proc = run_cli("algo=reinforce", "env=cartpole", "algo.baseline=value", *TINY, cwd=tmp_cwd)
    run_dir = only_run_dir(tmp_cwd)
    # named by algo and env, then the keys set that change what is trained (not algo=/env=, eval.*, log.*)
    assert run_dir.name.endswith("_reinforce_cartpole_algo.baseline=value,total_timesteps=600")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= 600 and math.isfinite(summary["eval_return_mean"])
    assert (run_dir / "model.pt").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    scalars = read_scalars(run_dir)
    assert EXPECTED_TAGS <= set(scalars)
    for tag in EXPECTED_TAGS:
        assert scalars[tag] and all(math.isfinite(v) for _, v in scalars[tag]), tag
    steps = [s for s, _ in scalars["charts/episodic_return"]]
    assert steps == sorted(steps) and steps[-1] == summary["env_steps"]  # x-axis: env steps
    # the first line says what is built, for how long and where; the last gives the final eval, the
    # best, and by how much the last batch of N trajectories went past the budget
    lines = proc.stdout.strip().splitlines()
    relative = run_dir.relative_to(tmp_cwd)
    assert lines[0].endswith(f"training reinforce on CartPole-v1, 600 env steps, seed 0 -> {relative}")
    final = f"final eval return {summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} (best "
    steps = summary["env_steps"]
    assert final in lines[-1] and f"| {steps} env steps ({steps - 600} past total_timesteps=600: " in lines[-1]


def test_continuous_actions_train_and_evaluate_with_the_mean_action(tmp_path):
    cfg = make_config("env=pendulum", "total_timesteps=800", "eval.episodes=2", "log.progress=none")
    final = runner.train(cfg, tmp_path)
    scalars = read_scalars(tmp_path)
    assert scalars["eval/episodic_return"][-1][1] == pytest.approx(final)
    assert -2000 < final < 0  # Pendulum pays between about -16.3 and 0 per step, 200 steps


def scalars_of(seed: int, out: Path) -> dict:
    cfg = make_config(f"seed={seed}", "total_timesteps=1500", "eval.every=500", "eval.episodes=2", "log.progress=none")
    runner.train(cfg, out)
    scalars = read_scalars(out)
    scalars.pop("charts/SPS")  # wall-clock, the one scalar that is not a function of the seed
    return scalars


def test_same_seed_gives_identical_scalars_and_another_seed_does_not(tmp_path):
    first = scalars_of(0, tmp_path / "a")
    assert first == scalars_of(0, tmp_path / "b")
    assert first != scalars_of(1, tmp_path / "c")


BAD_INPUTS = [
    ("algo.gamma=1.5", "algo.gamma=1.5", "a number in [0, 1]"),
    ("algo.gamma=-0.1", "algo.gamma=-0.1", "a number in [0, 1]"),
    ("algo.N=0", "algo.N=0", "an integer in [1, 100000]"),
    ("algo.N=abc", "algo.N='abc'", "an integer in [1, 100000]"),
    ("algo.lr=-0.001", "algo.lr=-0.001", "a number > 0"),
    ("algo.baseline=median", "algo.baseline='median'", "one of none, mean, value"),
    ("total_timesteps=0", "total_timesteps=0", "an integer >= 1"),
    ("eval.episodes=0", "eval.episodes=0", "an integer in [1, 100000]"),
    ("device=tpu", "device='tpu'", "one of auto, cpu, cuda"),
    ("env=gym env.id=NoSuchEnv-v0", "env.id='NoSuchEnv-v0'", "a registered gymnasium id"),
    ("env=gym", "env.id='???'", "a registered gymnasium id"),
]


@pytest.mark.parametrize("override,shown,allowed", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_value_is_refused_naming_key_value_and_what_is_allowed(override, shown, allowed):
    with pytest.raises(ConfigError) as err:
        build(make_config(*override.split()))
    assert str(err.value).startswith(f"{shown} is not allowed: {allowed}")


@pytest.mark.parametrize("override", ["algo.gamma=1.5", "algo.N=abc", "env=gym env.id=NoSuchEnv-v0"])
def test_cli_bad_input_exits_2_with_one_line_and_leaves_no_run(tmp_cwd, override):
    proc = run_cli(*override.split(), cwd=tmp_cwd, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlrun: error: ") and "Traceback" not in proc.stderr
    assert not list((tmp_cwd / "outputs").glob("*/*"))


@pytest.mark.parametrize("group", ["algo", "experiment"])
def test_unknown_group_option_lists_the_choices(tmp_cwd, group):
    # experiment defaults to none, but a name that is not a preset must not run the defaults silently
    proc = run_cli(f"{group}=nope", cwd=tmp_cwd, check=False)
    options = ", ".join(sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml")))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"rlrun: error: {group}='nope' is not allowed: one of {options} (configs/{group}/)"
    ]
    assert "Traceback" not in proc.stderr


def test_an_existing_folder_named_with_keys_and_values_is_passed_on_as_typed(tmp_cwd):
    (tmp_cwd / "run_algo.lr=0.01,seed=1").mkdir()
    args = ["resume=run_algo.lr=0.01,seed=1", "algo.lr=0.1,0.2", "-m", "algo.expert=no/such=run", "seed=1"]
    assert cli.quoted_paths(args) == ["resume='run_algo.lr=0.01,seed=1'", *args[1:]]


def test_help_lists_the_config_groups(tmp_cwd):
    out = run_cli("--help", cwd=tmp_cwd).stdout
    assert re.search(r"^algo: .*reinforce", out, re.MULTILINE) and re.search(r"^env: .*cartpole", out, re.MULTILINE)
    assert "total_timesteps" in out


def test_user_config_dir_adds_options_to_the_groups(tmp_cwd):
    (tmp_cwd / "mine" / "env").mkdir(parents=True)
    (tmp_cwd / "mine" / "env" / "short_pole.yaml").write_text(
        "name: short_pole  # run-directory name\nid: CartPole-v1  # gymnasium id\nmax_episode_steps: 50  # time limit\n"
    )
    out = run_cli("--config-dir", "mine", "env=short_pole", "--cfg", "job", cwd=tmp_cwd).stdout
    assert "max_episode_steps: 50" in out and "name: short_pole" in out


def test_a_user_config_that_sets_hydra_mode_still_decides_run_or_sweep(tmp_cwd):
    """rlrun spares Hydra's composition that only reads hydra.mode, which none of its own configs sets
    (test_configs.py); a config from --config-dir that sets it is still obeyed."""
    (tmp_cwd / "mine" / "experiment").mkdir(parents=True)
    (tmp_cwd / "mine" / "experiment" / "sweeping.yaml").write_text(
        "# @package _global_\nhydra:\n  mode: MULTIRUN  # a sweep without -m\n  sweep:\n    dir: swept\n"
    )
    run_cli("--config-dir", "mine", "experiment=sweeping", "seed=0,1", *TINY, "total_timesteps=100", cwd=tmp_cwd)
    assert sorted(p.parent.name for p in (tmp_cwd / "swept").rglob("summary.json")) == ["seed=0", "seed=1"]


def test_training_stops_at_the_first_evaluation_that_reaches_stop_at(tmp_path, caplog):
    cfg = make_config("total_timesteps=100000", "eval.every=300", "eval.episodes=2", "eval.stop_at=0", "log.progress=none")
    with caplog.at_level(logging.INFO, logger="rlrun"):
        runner.train(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    evals = read_scalars(tmp_path)["eval/episodic_return"]
    assert len(evals) == 1 and evals[0][0] == summary["env_steps"] < 1000  # CartPole episodes are <= 500 steps
    stopped = f"| {summary['env_steps']} env steps (eval.stop_at=0 reached before total_timesteps=100000) |"
    assert stopped in caplog.messages[-1]
