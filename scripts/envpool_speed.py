"""env.backend=envpool against gymnasium's vector env: env steps/s of a whole algorithm, raw stepping,
and the final evaluation a run reaches on each.

    python scripts/envpool_speed.py                      # ppo on acrobot, 64 envs: speed, raw, learning
    python scripts/envpool_speed.py --skip-learning --repeats 7 -- algo.T=64

speed: `rlrun algo=ppo env=acrobot algo.num_envs=64 env.backend=B total_timesteps=--steps eval.every=0`
for each backend in turn, `--repeats` times, alternating which backend goes first; env steps/s is a
run's env steps over its training seconds (summary.json: evaluation and start-up excluded). Prints
each repeat, the medians and their ratio.
raw: random actions through `rlrun.envs.make_vec_env` alone, no policy: what the env backend costs.
learning: the same command with the config's budget and evaluation for each of `--seeds`; prints each
run's final and best evaluation (evaluation runs on gymnasium's envs for both backends).

Needs `pip install -e ".[envpool]"`. Runs one at a time, so timings are comparable on a small machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("gymnasium", "envpool")


def run(overrides: list[str], run_dir: Path) -> dict:
    cmd = ["rlrun", *overrides, f"hydra.run.dir={run_dir}", "log.progress=none"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def speed(args, common: list[str], out: Path) -> None:
    rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
    print(f"speed: {' '.join(common)} total_timesteps={args.steps} eval.every=0 (env steps/s)")
    print(f"{'repeat':>6}  {'gymnasium':>10}  {'envpool':>10}  ratio")
    for repeat in range(args.repeats):
        order = BACKENDS if repeat % 2 == 0 else BACKENDS[::-1]
        for backend in order:
            summary = run(
                [
                    *common,
                    f"env.backend={backend}",
                    f"total_timesteps={args.steps}",
                    "eval.every=0",
                    "eval.episodes=1",
                    "checkpoint.every=0",
                    f"seed={repeat}",
                ],
                out / f"speed_{backend}_{repeat}",
            )
            rates[backend].append(summary["env_steps"] / summary["train_seconds"])
        g, e = rates["gymnasium"][-1], rates["envpool"][-1]
        print(f"{repeat:>6}  {g:>10.0f}  {e:>10.0f}  {e / g:.2f}x")
    g, e = (statistics.median(rates[b]) for b in BACKENDS)
    print(f"{'median':>6}  {g:>10.0f}  {e:>10.0f}  {e / g:.2f}x")


def raw(args) -> None:
    from hydra import compose, initialize_config_dir

    from rlrun import envs
    from rlrun.config import config_dir

    print(f"raw: random actions, {args.num_envs} envs of env={args.env}, no policy (env steps/s)")
    for backend in BACKENDS:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"env={args.env}", f"env.backend={backend}"])
        env = envs.make_vec_env(cfg.env, args.num_envs)
        env.reset(seed=0)
        env.action_space.seed(0)
        actions = [env.action_space.sample() for _ in range(200)]
        best = 0.0
        for _ in range(args.repeats):
            start = time.perf_counter()
            for action in actions:
                env.step(action)
            best = max(best, len(actions) * args.num_envs / (time.perf_counter() - start))
        env.close()
        print(f"  {backend:>10}: {best:>9.0f} (best of {args.repeats} x {len(actions)} steps)")


def learning(args, common: list[str], out: Path) -> None:
    print(f"learning: {' '.join(common)}, the config's budget and evaluation; final eval (best)")
    print(f"{'seed':>4}  {'gymnasium':>18}  {'envpool':>18}")
    finals: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for seed in args.seeds:
        cells = []
        for backend in BACKENDS:
            summary = run([*common, f"env.backend={backend}", f"seed={seed}"], out / f"learn_{backend}_{seed}")
            finals[backend].append(summary["eval_return_mean"])
            cells.append(f"{summary['eval_return_mean']:.1f} ({summary['best_eval_return_mean']:.1f})")
        print(f"{seed:>4}  {cells[0]:>18}  {cells[1]:>18}")
    print(f"{'mean':>4}  {statistics.mean(finals['gymnasium']):>18.1f}  {statistics.mean(finals['envpool']):>18.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="acrobot")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50_000, help="env steps of each speed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-raw", action="store_true")
    parser.add_argument("--skip-learning", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="more rlrun overrides for every run, after --")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rlrun-envpool-"))
    common = [f"algo={args.algo}", f"env={args.env}", f"algo.num_envs={args.num_envs}", *args.overrides]
    if not args.skip_speed:
        speed(args, common, out)
    if not args.skip_raw:
        raw(args)
    if not args.skip_learning:
        learning(args, common, out)
    print(f"runs in {out}")


if __name__ == "__main__":
    main()
