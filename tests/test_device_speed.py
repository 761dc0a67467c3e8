"""scripts/device_speed.py (issue 19's device=cuda check): its CPU path end to end, and its refusal
of a device torch cannot use here, before any run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_speed.py"


def device_speed(*args: str) -> subprocess.CompletedProcess:
    """The script in a process of its own, with this interpreter's `rlrun` command first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_is_refused_in_one_line_before_anything_runs(tmp_path):
    proc = device_speed("--out", str(tmp_path))  # the default devices: cpu and cuda
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "device_speed.py: --devices cuda cannot run here: torch.cuda.is_available() is False on this machine"
    ]
    assert list(tmp_path.iterdir()) == []


def test_cpu_runs_report_steps_per_second_and_final_evaluations(tmp_path):
    proc = device_speed("--devices", "cpu", "--pairs", "ppo:cartpole", "--steps", "1000", "--seeds", "0",
                        "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| ppo:cartpole |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) > 0  # cpu env steps/s
    assert cells[3].startswith("cpu: ")  # the final evaluation of the one run
    assert (tmp_path / "ppo_cartpole_cpu_seed0" / "summary.json").is_file()
