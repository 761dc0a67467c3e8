"""How much seeing its task is worth: the final eval of task-observing runs minus blind ones, on the
train tasks and on the held-out test tasks, with a 95% percentile-bootstrap interval of the difference.

    for obs in none params; do for s in 0 1 2 3 4; do
        rlrun algo=ppo task=point_goals task.observe=$obs seed=$s hydra.run.dir=margin/ppo_$obs/seed_$s
    done; done
    python scripts/task_margin.py --blind margin/ppo_none/seed_* --observing margin/ppo_params/seed_*

Each run's figures are its summary.json's `train_tasks/episodic_return` and `test_tasks/episodic_return`
(the final evaluation). The two groups are resampled apart (seeds with replacement within each group),
since their seeds are separate runs, not pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rlrun.compare import CONFIDENCE, resample_weights

SPLITS = ("train_tasks", "test_tasks")


def finals(runs: list[Path], split: str) -> np.ndarray:
    return np.array([json.loads((run / "summary.json").read_text())[f"{split}/episodic_return"] for run in runs])


def margin(blind: np.ndarray, observing: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """mean(observing) - mean(blind) and the 95% bootstrap interval of it."""
    rng = np.random.default_rng(seed)
    diffs = resample_weights(len(observing), rng) @ observing - resample_weights(len(blind), rng) @ blind
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(observing.mean() - blind.mean()), float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blind", type=Path, nargs="+", required=True, help="run folders with task.observe=none")
    parser.add_argument("--observing", type=Path, nargs="+", required=True, help="run folders that see their task")
    args = parser.parse_args()
    for split in SPLITS:
        blind, observing = finals(args.blind, split), finals(args.observing, split)
        diff, low, high = margin(blind, observing)
        print(f"{split}: blind {blind.mean():.1f} ({', '.join(f'{v:.1f}' for v in blind)}), "
              f"observing {observing.mean():.1f} ({', '.join(f'{v:.1f}' for v in observing)}); "
              f"margin {diff:.1f}, 95% interval [{low:.1f}, {high:.1f}]")


if __name__ == "__main__":
    main()
