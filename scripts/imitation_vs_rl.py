"""The lecture's "imitation vs reinforcement learning" on CartPole, as one command:

    python scripts/imitation_vs_rl.py --out outputs/imitation_vs_rl --seeds 5

1. an expert (PPO trained until its evaluation returns 500) and a medium policy (PPO stopped early)
2. one dataset of mixed quality from them and a random policy: whole episodes, by rlrun-collect
3. on that dataset, offline, each for the same number of gradient steps: behaviour cloning,
   filtered BC (the best fraction of episodes by return) and fitted Q-iteration
4. online PPO with as many env steps as the dataset holds, and no data
5. rlrun-compare over 3 and 4: the table (final evaluation per seed: mean, IQM, 95% CI) and figure

Every step is an ordinary rlrun command, printed before it runs. Runs already finished in --out
are kept (the expert, the medium policy and the dataset are made once). On 2 CPU cores the whole
comparison takes about 10 minutes with 5 seeds.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

COMMON = ["env=cartpole", "threads=1", "log.progress=none", "eval.episodes=10"]
ENTRY_POINTS = {"rlrun.cli": "rlrun", "rlrun.collect": "rlrun-collect", "rlrun.compare": "rlrun-compare"}
# Offline fitted Q-iteration fits each target set longer than online (the advice in configs/algo/fqi.yaml).
OFFLINE_FQI = ["algo.K=1", "algo.S=128", "algo.lr=0.0005", "algo.batch_size=256", "algo.n_step=1"]


def run(module: str, *args: str) -> None:
    print("$", shlex.join([ENTRY_POINTS[module], *args]), flush=True)
    subprocess.run([sys.executable, "-m", module, *args], check=True)


def train(folder: Path, seeds: int, *overrides: str) -> Path:
    """`rlrun` with `seeds` seeds into `folder` (folder/seed=<n> each), unless they finished there already."""
    finished = folder / "summary.json" if seeds == 1 else folder / f"seed={seeds - 1}" / "summary.json"
    if not finished.is_file():
        run("rlrun.cli", *overrides, f"seeds={seeds}", *COMMON, f"hydra.run.dir={folder}")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/imitation_vs_rl"))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method (0, 1, ...)")
    parser.add_argument("--expert", type=Path, help="a finished CartPole run to use as the expert (default: train PPO)")
    parser.add_argument("--episodes", default="10,100,100", help="expert, medium and random episodes in the dataset")
    parser.add_argument("--filter-top", type=float, default=0.05, help="fraction of episodes filtered BC keeps")
    parser.add_argument("--gradient-steps", type=int, default=5000, help="budget of each offline run")
    args = parser.parse_args()
    out = args.out.resolve()

    # 1. the behaviour policies: an expert, and PPO stopped early
    ppo = ["algo=ppo", "eval.every=2000"]
    expert = args.expert or train(out / "expert", 1, *ppo, "seed=0", "total_timesteps=100000", "eval.stop_at=500")
    medium = train(out / "medium", 1, *ppo, "seed=1", "total_timesteps=6000")
    # 2. one dataset of whole episodes from the three
    dataset = out / "dataset.npz"
    if not dataset.is_file():
        run("rlrun.collect", "--out", str(dataset), "--policy", str(expert), "--policy", str(medium),
            "--policy", "random", "--episodes", args.episodes)
    with np.load(dataset) as data:
        env_steps = len(data["rewards"])  # what collecting the dataset cost in env steps
    # 3. offline on the dataset, 4. online with as many env steps
    runs = out / "runs"
    offline = [f"algo.dataset={dataset}", f"total_timesteps={args.gradient_steps}",
               f"eval.every={args.gradient_steps // 10}"]
    train(runs / "bc", args.seeds, "algo=bc", *offline)
    train(runs / "filtered_bc", args.seeds, "algo=bc", f"algo.filter_top={args.filter_top}", *offline)
    train(runs / "fqi", args.seeds, "algo=fqi", *OFFLINE_FQI, *offline)
    train(runs / "ppo", args.seeds, "algo=ppo", f"total_timesteps={env_steps}", f"eval.every={env_steps // 10}")
    # 5. the table and the figure
    run("rlrun.compare", str(runs), "--threshold", "475")


if __name__ == "__main__":
    main()
