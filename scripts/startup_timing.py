"""How long rlrun takes before it learns: a refused value, and the first line of a run, against the
floor of `python -c "import torch"`, measured the same way and interleaved so the machine's noise
falls on both alike.

    python scripts/startup_timing.py            # 5 rounds
    python scripts/startup_timing.py --rounds 9

Each round runs, one after another: `python -c "import torch"`, `rlrun algo.gamma=1.5` (a bad value,
refused with exit code 2), and `rlrun algo=reinforce env=cartpole total_timesteps=2000` (the time to
its first byte of output, and to its end). Prints every round and the medians, and each median as a
ratio of the torch import's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

TORCH = [sys.executable, "-c", "import torch"]
REFUSED = ["rlrun", "algo.gamma=1.5"]


def timed(cmd: list[str], expect_rc: int = 0) -> tuple[float, float]:
    """(seconds to the first byte on stdout or stderr, seconds to the end) of `cmd`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = proc.stdout.read(1)
    first_at = time.perf_counter() - start
    rest = first + proc.stdout.read()
    rc = proc.wait()
    end = time.perf_counter() - start
    if rc != expect_rc:
        sys.exit(f"{' '.join(cmd)} exited {rc}, expected {expect_rc}:\n{rest.decode()[-2000:]}")
    return (first_at if first else end), end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    print(f"{'round':>5} {'import torch':>12} {'refused':>8} {'run: first line':>15} {'run: end':>8}")
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as run_dir:
            run = ["rlrun", "algo=reinforce", "env=cartpole", "total_timesteps=2000", f"hydra.run.dir={run_dir}"]
            torch_s = timed(TORCH)[1]
            refused_s = timed(REFUSED, expect_rc=2)[1]
            first_s, end_s = timed(run)
        rows.append((torch_s, refused_s, first_s, end_s))
        print(f"{i:>5} {torch_s:>12.2f} {refused_s:>8.2f} {first_s:>15.2f} {end_s:>8.2f}", flush=True)
    medians = [statistics.median(column) for column in zip(*rows)]
    print(f"{'med':>5} {medians[0]:>12.2f} {medians[1]:>8.2f} {medians[2]:>15.2f} {medians[3]:>8.2f}")
    print(
        f"as a ratio of import torch: refused {medians[1] / medians[0]:.2f}x, first line {medians[2] / medians[0]:.2f}x, "
        f"whole run {medians[3] / medians[0]:.2f}x"
    )


if __name__ == "__main__":
    main()
