"""Regenerate BENCHMARK.md: each (algo, env) pair of issue 13's table, trained by its default
command `rlrun algo=X env=Y seed=S` for seeds 0-4, one run at a time.

    python scripts/benchmark_defaults.py                    # every pair: about an hour on 2 cores
    python scripts/benchmark_defaults.py --only ppo:cartpole fqi:lunarlander
    python scripts/benchmark_defaults.py --report-only      # BENCHMARK.md from the runs in --out
    python scripts/benchmark_defaults.py --only fqi:cartpole --seeds 0 1 --out /tmp/smoke \\
        --md /tmp/smoke/BENCHMARK.md -- total_timesteps=3000 eval.every=1000   # a quick smoke run

Runs go to <out>/<algo>_<env>/seed_<n>. A seed whose summary.json is there already is not run
again, so an interrupted regeneration resumes where it stopped (and overrides after -- change
only the runs still to do). Per pair, BENCHMARK.md gives the final evaluation's interquartile mean
over the seeds with a 95% bootstrap interval of it, how many seeds ended at or above the target,
the median env steps to the first evaluation at or above it (over the seeds that got there) and
the median training seconds (evaluation excluded), then every seed's final evaluation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
from seeds_to_threshold import first_reach, read_scalars, run_seed

from rlrun.compare import CONFIDENCE, RESAMPLES, iqm

ROOT = Path(__file__).resolve().parents[1]
ENVS = {  # rlrun env name (configs/env/NAME.yaml): (gymnasium id, target return)
    "cartpole": ("CartPole-v1", 475),
    "acrobot": ("Acrobot-v1", -100),
    "pendulum": ("Pendulum-v1", -200),
    "mountaincar": ("MountainCar-v0", -120),
    "lunarlander": ("LunarLander-v3", 200),  # needs the box2d extra
}
PAIRS = [
    *[(algo, "cartpole") for algo in ("reinforce", "actor_critic", "ppo", "fqi")],
    *[(algo, "acrobot") for algo in ("actor_critic", "ppo", "fqi")],
    *[(algo, "pendulum") for algo in ("qtopt", "ppo")],
    ("fqi", "mountaincar"),
    *[(algo, "lunarlander") for algo in ("ppo", "fqi")],
]


def iqm_interval(finals: list[float], seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the IQM over seeds, resampling the seeds with replacement."""
    values = np.asarray(finals, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(RESAMPLES, len(values)))
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(np.apply_along_axis(iqm, 1, values[draws]), [tail, 100 - tail])
    return float(low), float(high)


def pair_stats(finals: list[float], steps_to_target: list[int | None], seconds: list[float], target: float) -> dict:
    """A pair's row from its seeds' final evals, env steps to the target (None: never) and training seconds."""
    reached = [s for s in steps_to_target if s is not None]
    return {
        "iqm": iqm(finals),
        "interval": iqm_interval(finals),
        "at_target": sum(f >= target for f in finals),
        "seeds": len(finals),
        "median_steps": statistics.median(reached) if reached else None,
        "median_seconds": statistics.median(seconds),
    }


def read_pair(pair_dir: Path, seeds: list[int], target: float) -> list[dict]:
    """The seeds finished in pair_dir: seed, final eval, env steps to the target, training seconds."""
    rows = []
    for seed in seeds:
        run_dir = pair_dir / f"seed_{seed}"
        if (run_dir / "summary.json").is_file():
            summary = json.loads((run_dir / "summary.json").read_text())
            steps, _ = first_reach(read_scalars(run_dir), target)
            rows.append(
                {
                    "seed": seed,
                    "final": summary["eval_return_mean"],
                    "steps": steps,
                    "seconds": summary["train_seconds"],
                }
            )
    return rows


def report(pairs: list[tuple[str, str]], seeds: list[int], out: Path, command: str) -> str:
    lines = [
        "# Benchmark: the default command of each (algo, env) pair",
        "",
        (
            f"Each pair trained by `rlrun algo=X env=Y seed=S` with its default budget and settings "
            f"(configs/algo_env/ where the pair has a file). Final eval: the mean return of the run's last "
            f"evaluation (summary.json's `eval_return_mean`); IQM and its {CONFIDENCE:.0%} bootstrap interval "
            f"are over the seeds ({RESAMPLES} resamples); steps to target: median over the seeds whose eval "
            f"curve reached it; seconds: median training time, evaluation excluded."
        ),
        "",
        (
            "| algo | env (target) | final eval IQM | 95% CI | seeds at target | median env steps to target "
            "| median train s | final eval per seed |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for algo, env in pairs:
        env_id, target = ENVS[env]
        rows = read_pair(out / f"{algo}_{env}", seeds, target)
        if not rows:
            lines.append(f"| {algo} | {env_id} ({target}) | no finished runs | | | | | |")
            continue
        s = pair_stats([r["final"] for r in rows], [r["steps"] for r in rows], [r["seconds"] for r in rows], target)
        steps = "-" if s["median_steps"] is None else f"{s['median_steps']:,.0f}"
        per_seed = ", ".join(f"{r['seed']}: {r['final']:.1f}" for r in rows)
        lines.append(
            f"| {algo} | {env_id} ({target}) | {s['iqm']:.1f} | [{s['interval'][0]:.1f}, {s['interval'][1]:.1f}] "
            f"| {s['at_target']}/{s['seeds']} | {steps} | {s['median_seconds']:.1f} | {per_seed} |"
        )
    lines += [
        "",
        (
            f"Generated {datetime.date.today().isoformat()} on {os.cpu_count()} CPU cores, torch {version('torch')}, "
            f"gymnasium {version('gymnasium')}, Python {sys.version.split()[0]}, one run at a time."
        ),
        "",
        (
            "Regenerated by the command below; the finished runs in its --out folder (default "
            "outputs/benchmark_defaults) are reused: delete them to start over."
        ),
        "",
        f"    {command}",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--only", nargs="+", metavar="ALGO:ENV", help="pairs to run and report (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark_defaults", help="where the runs go")
    parser.add_argument("--md", type=Path, default=ROOT / "BENCHMARK.md", help="the report written")
    parser.add_argument("--report-only", action="store_true", help="write the report from --out, run nothing")
    parser.add_argument("overrides", nargs="*", help="extra rlrun overrides for every run, after --")
    args = parser.parse_args()
    pairs = PAIRS
    if args.only:
        pairs = [tuple(p.split(":", 1)) for p in args.only]
        unknown = [f"{a}:{e}" for a, e in pairs if (a, e) not in PAIRS]
        if unknown:
            parser.error(f"not a benchmark pair: {' '.join(unknown)} (pairs: {' '.join(f'{a}:{e}' for a, e in PAIRS)})")

    failed = []
    for algo, env in [] if args.report_only else pairs:
        for seed in args.seeds:
            run_dir = args.out / f"{algo}_{env}" / f"seed_{seed}"
            if (run_dir / "summary.json").is_file():
                continue
            try:
                result = run_seed([f"algo={algo}", f"env={env}", *args.overrides], seed, run_dir.parent)
            except SystemExit as err:  # run_seed exits on a failed run; the other runs still go ahead
                print(err, file=sys.stderr)
                failed.append(f"{algo}:{env} seed {seed}")
                continue
            print(
                f"{algo} {env} seed {seed}: final eval {result['eval_return_mean']:.1f}, "
                f"{result['train_seconds']:.0f} s training",
                flush=True,
            )

    # the command that makes (or, its runs reused, remakes) these runs and this report
    command = shlex.join(
        ["python", "scripts/benchmark_defaults.py", *(a for a in sys.argv[1:] if a != "--report-only")]
    )
    args.md.write_text(report(pairs, args.seeds, args.out, command))
    print(f"wrote {args.md}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
