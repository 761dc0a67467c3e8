"""Shared test helpers: compose configs in-process, run the CLI in a subprocess, read event files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlrun.config import config_dir
from rlrun.events import events_dir

# Small budgets everywhere: tests check behaviour, the scripts in scripts/ measure learning.
TINY = ["total_timesteps=600", "eval.every=300", "eval.episodes=2", "log.progress=none"]


def make_config(*overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """`rlrun ARGS` as a user would type it (through the installed entry point's module)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "rlrun.cli", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"rlrun {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(events_dir(run_dir)), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path
