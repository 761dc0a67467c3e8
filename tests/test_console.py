"""What a run prints: its first line before torch is imported, a bar that stops at the budget with
one speed and the final eval, and a last line in the run's own x-axis unit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rlrun import console
from rlrun.algos import specs
from rlrun.build import algorithm_class
from rlrun.logger import EVAL_TAG, Logger
from tests.conftest import make_config


@pytest.mark.parametrize("name", sorted(specs.SPECS))
def test_the_first_lines_unit_is_the_one_the_algorithm_counts(name):
    assert console.x_axis(make_config(f"algo={name}")) == algorithm_class(name).x_axis


def test_offline_fqi_counts_gradient_steps():  # fqi.FittedQ sets it when it is given a dataset
    assert console.x_axis(make_config("algo=fqi", "algo.dataset=d.npz")) == "gradient_steps"


@pytest.mark.parametrize(
    "overrides, presets, line",
    [
        ([], {}, "training reinforce on CartPole-v1, 200000 env steps, seed 0 -> out/run"),  # configs/algo_env/
        (
            ["experiment=ppo_pendulum", "seed=2", "seeds=3"],
            {"experiment": "ppo_pendulum", "task": None},
            "training ppo on Pendulum-v1 (experiment=ppo_pendulum), 200000 env steps, seeds 2-4 -> out/run",
        ),
        (
            ["algo=value_iteration", "env=frozenlake"],
            {},
            "training value_iteration on FrozenLake-v1, until converged, at most 100000 iterations, seed 0",
        ),
        (["algo=bc", "total_timesteps=500"], {}, "training bc on CartPole-v1, 500 gradient steps"),
        (["resume=out/run"], {}, "continuing reinforce on CartPole-v1"),
    ],
)
def test_the_first_line_says_what_is_built_for_how_long_and_where(tmp_cwd, overrides, presets, line):
    assert console.first_line(make_config(*overrides), tmp_cwd / "out" / "run", presets).startswith(line)


def test_the_first_line_comes_before_torch_is_imported(tmp_cwd):
    """With a torch that cannot be imported the run fails, but only after its first line is out."""
    (tmp_cwd / "blocked" / "torch").mkdir(parents=True)
    (tmp_cwd / "blocked" / "torch" / "__init__.py").write_text("raise ImportError('torch blocked by the test')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_cwd / "blocked")}  # found before the installed torch
    proc = subprocess.run(
        [sys.executable, "-m", "rlrun.cli", "total_timesteps=2000", "hydra.run.dir=run"],
        cwd=tmp_cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0 and "torch blocked by the test" in proc.stderr
    assert proc.stdout.splitlines()[0].endswith("training reinforce on CartPole-v1, 2000 env steps, seed 0 -> run")


def test_the_bar_stops_at_the_budget_shows_one_speed_and_ends_on_the_final_eval(tmp_path, capsys):
    logger = Logger(tmp_path, make_config("total_timesteps=1000", "log.progress=bar"))
    logger.log(600, {"charts/episodic_return": 20.0, "charts/SPS": 5000.0, EVAL_TAG: 10.0})
    logger.progress(600)
    logger.progress(1150)  # the last batch went past the budget
    logger.log(1150, {EVAL_TAG: 42.0})  # the final evaluation, after the loop's last progress
    logger.close()
    last = capsys.readouterr().err.split("\r")[-1]
    assert "1000/1000" in last and "1150" not in last  # the bar keeps its total, never `1150 env steps [...]`
    assert "eval=42" in last and "return=20" in last
    assert last.count("/s") == 1 and "env steps/s" in last  # tqdm's rate alone, no steps/s=... beside it


@pytest.mark.parametrize(
    "step, unit, reason, said",
    [
        (2000, "env_steps", None, "2000 env steps"),
        (
            2477,
            "env_steps",
            None,
            "2477 env steps (477 past total_timesteps=2000: the last iteration was not cut short)",
        ),
        (
            571,
            "iterations",
            "value_iteration finished",
            "571 iterations (value_iteration finished before total_timesteps=2000)",
        ),
        (600, "gradient_steps", None, "600 gradient steps"),
    ],
)
def test_the_last_line_says_where_the_run_stopped_in_its_own_unit(step, unit, reason, said):
    assert console.stopped_at(step, 2000, unit, reason) == said
