"""Time one sweep with a launcher preset and with Hydra's basic launcher (one job after another).

    python scripts/sweep_timing.py --out /tmp/sweeps -- algo=reinforce,actor_critic seed=0,1,2 total_timesteps=20000

Both sweeps run the same jobs, one sweep after the other; the script prints each wall-clock (from
start of `rlrun -m` to its exit, imports and worker start-up included), the ratio, and the sweep
folders, ready for `rlrun-compare`. One timing each: on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def run_sweep(launcher: str | None, overrides: list[str], sweep_dir: Path) -> float:
    cmd = ["rlrun", "-m", *overrides, "log.progress=none", f"hydra.sweep.dir={sweep_dir}"]
    if launcher:
        cmd.insert(2, f"launcher={launcher}")
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"the sweep with launcher={launcher or 'basic'} failed (exit code {proc.returncode})")
    finished = len(list(sweep_dir.rglob("summary.json")))
    print(f"  {finished} runs finished in {seconds:.1f} s -> {sweep_dir}", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launcher", default="parallel", help="preset to time against the basic launcher")
    parser.add_argument("--out", type=Path, required=True, help="the two sweeps go to OUT/<launcher> and OUT/basic")
    parser.add_argument("overrides", nargs="+", help="the sweep's overrides, after --")
    args = parser.parse_args()
    timed = run_sweep(args.launcher, args.overrides, args.out / args.launcher)
    basic = run_sweep(None, args.overrides, args.out / "basic")
    print(
        f"launcher={args.launcher}: {timed:.1f} s | basic (sequential): {basic:.1f} s | speed-up {basic / timed:.2f}x"
    )


if __name__ == "__main__":
    main()
