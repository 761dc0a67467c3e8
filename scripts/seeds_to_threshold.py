"""Run one rlrun config for several seeds and report, per seed, when it first reached a return.

    python scripts/seeds_to_threshold.py --threshold 475 --seeds 0 1 2 3 4 -- algo=reinforce env=cartpole
    python scripts/seeds_to_threshold.py --metric eval/success_rate --threshold 0.9 -- algo=fqi env=bitflip

Seeds run one after another (one at a time keeps timings comparable on a small machine). For each
seed it prints the env steps and the training seconds (evaluation excluded) at the first
evaluation whose mean return is >= the threshold, the final evaluation return and the env
steps/s; then the medians and how many seeds reached the threshold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # events in the run folder
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def first_reach(scalars: dict, threshold: float, metric: str = "eval/episodic_return") -> tuple[int | None, float | None]:
    """(steps, training seconds) at the first evaluation whose `metric` is >= threshold, or (None, None)."""
    sps = dict(scalars.get("charts/SPS", []))
    for step, value in scalars[metric]:
        if value >= threshold:
            return step, step / sps[step] if sps.get(step) else None
    return None, None


def run_seed(overrides: list[str], seed: int, out: Path) -> dict:
    run_dir = out / f"seed_{seed}"
    cmd = ["rlrun", *overrides, f"seed={seed}", f"hydra.run.dir={run_dir}", "log.progress=none"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"seed {seed} failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"seed": seed, "scalars": read_scalars(run_dir), **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, required=True, help="value of --metric to reach")
    parser.add_argument("--metric", default="eval/episodic_return", help="eval tag to judge (eval/success_rate, ...)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the per-seed rows here")
    parser.add_argument("overrides", nargs="*", help="rlrun overrides, after --")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rlrun-seeds-"))

    rows = []
    print(f"{' '.join(args.overrides)}  {args.metric} >= {args.threshold}  runs in {out}")
    print(f"{'seed':>4} {'steps_to_thr':>12} {'secs_to_thr':>11} {'final_eval':>10} {'steps/s':>9}")
    for seed in args.seeds:
        result = run_seed(args.overrides, seed, out)
        steps, seconds = first_reach(result["scalars"], args.threshold, args.metric)
        row = {
            "seed": seed,
            "steps_to_threshold": steps,
            "seconds_to_threshold": seconds,
            "final_eval": result["scalars"][args.metric][-1][1],
            "steps_per_second": result["steps"] / result["train_seconds"],
        }
        rows.append(row)
        fmt = lambda v, spec: "-" if v is None else format(v, spec)
        print(
            f"{seed:>4} {fmt(steps, 'd'):>12} {fmt(seconds, '.1f'):>11} "
            f"{row['final_eval']:>10.3g} {row['steps_per_second']:>9.0f}",
            flush=True,
        )
    reached = [r for r in rows if r["steps_to_threshold"] is not None]
    print(f"reached {len(reached)}/{len(rows)}", end="")
    if reached:
        print(f"; median steps {statistics.median(r['steps_to_threshold'] for r in reached):.0f}", end="")
    timed = [r["seconds_to_threshold"] for r in reached if r["seconds_to_threshold"] is not None]
    if timed:  # runs whose x-axis is not env steps log no env steps/s to time them by
        print(f", median seconds {statistics.median(timed):.1f}", end="")
    print(f"; median final eval {statistics.median(r['final_eval'] for r in rows):.3g}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
