"""A non-editable install (the wheel) finds its configs from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_configs_and_runs_from_another_directory(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheels.glob("rlrun-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)

    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy shadows the checkout
    probe = "import rlrun.cli as c; print(c.__file__); print(c.config_dir())"
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    module_file, configs = out.stdout.split()
    assert module_file.startswith(str(target)) and configs == str(target / "rlrun" / "configs")
    assert (Path(configs) / "algo" / "reinforce.yaml").is_file() and (Path(configs) / "env" / "cartpole.yaml").is_file()

    job = subprocess.run(
        [sys.executable, "-m", "rlrun.cli", "env=acrobot", "--cfg", "job"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )
    assert "id: Acrobot-v1" in job.stdout and "name: reinforce" in job.stdout
