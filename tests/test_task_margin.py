"""scripts/task_margin.py: the worth of seeing the task, observing minus blind, with its interval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "task_margin.py"
sys.path.insert(0, str(SCRIPT.parent))  # scripts/ is no package
import task_margin


def test_the_margin_is_the_difference_of_means_and_its_interval_holds_it():
    blind = np.array([-18.0, -19.0, -17.5, -18.5, -18.0])
    observing = blind + 15.0 + np.array([0.5, -0.5, 0.2, -0.2, 0.0])
    diff, low, high = task_margin.margin(blind, observing)
    assert diff == np.mean(observing) - np.mean(blind)
    assert low < diff < high and 13.0 < low and high < 17.0
    same, low, high = task_margin.margin(blind, blind.copy())
    assert same == 0.0 and low < 0.0 < high  # no worth: the interval straddles 0


def test_it_reads_each_runs_final_train_and_test_returns(tmp_path):
    for group, train, test in (("blind", -18.0, -58.0), ("seeing", -3.0, -8.0)):
        for seed in range(3):
            run = tmp_path / group / f"seed_{seed}"
            run.mkdir(parents=True)
            summary = {"train_tasks/episodic_return": train + seed, "test_tasks/episodic_return": test - seed}
            (run / "summary.json").write_text(json.dumps(summary))
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--blind", *map(str, sorted((tmp_path / "blind").iterdir())),
         "--observing", *map(str, sorted((tmp_path / "seeing").iterdir()))],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "train_tasks: blind -17.0 (-18.0, -17.0, -16.0), observing -2.0" in out and "margin 15.0" in out
    assert "test_tasks: blind -59.0" in out and "margin 50.0" in out
