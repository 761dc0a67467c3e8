"""device=cuda against device=cpu, end to end: env steps/s of whole `rlrun` runs and the final
evaluation each reaches, for the algorithms a GPU might help (issue 19, item 6). Run it where a GPU
is lent; nothing else in rlrun needs one.

    python scripts/device_speed.py                                   # the pairs below, seeds 0 and 1
    python scripts/device_speed.py --pairs qtopt:pendulum --seeds 0 1 2
    python scripts/device_speed.py --devices cpu --steps 2000        # the same path without a GPU

For each pair and seed, one run per device, alternating which goes first: `rlrun algo=A env=E
device=D seed=S total_timesteps=STEPS eval.every=0` (one evaluation of 10 episodes, at the end).
env steps/s is a run's env steps over its training seconds (summary.json: start-up, CUDA's
initialisation and evaluation excluded). Prints every run, then per pair the median env steps/s on
each device, their ratio, and the final evaluations side by side. A requested device that torch
cannot use here is refused before anything runs (exit 2).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from envpool_speed import run

# algo:env -> env steps of each of its runs: enough for the final evaluation to say whether it learned
PAIRS = {
    "ppo:cartpole": 50_000,
    "ppo:pendulum": 100_000,
    "qtopt:pendulum": 4_000,
}


def unusable_device(device: str) -> str | None:
    """Why torch cannot use `device` here, or None."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return "torch.cuda.is_available() is False on this machine"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), help="algo:env pairs (default: %(default)s)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=None, help="env steps of every run (default: the pair's)")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="more rlrun overrides for every run, after --")
    args = parser.parse_args()
    for pair in args.pairs:
        if pair.count(":") != 1:
            parser.error(f"--pairs: {pair!r} is not algo:env (for example qtopt:pendulum)")
    for device in args.devices:
        if (why := unusable_device(device)) is not None:
            print(f"device_speed.py: --devices {device} cannot run here: {why}", file=sys.stderr)
            sys.exit(2)
    out = args.out or Path(tempfile.mkdtemp(prefix="rlrun-device-"))

    print(f"{'pair':<16} {'seed':>4} {'device':>6} {'env steps':>9} {'train s':>8} {'steps/s':>8} {'final eval':>10}")
    results: dict[str, dict[str, list[dict]]] = {}
    for pair in args.pairs:
        algo, env = pair.split(":")
        steps = args.steps or PAIRS.get(pair, 50_000)
        results[pair] = {device: [] for device in args.devices}
        for i, seed in enumerate(args.seeds):
            for device in args.devices if i % 2 == 0 else args.devices[::-1]:
                summary = run(
                    [f"algo={algo}", f"env={env}", f"device={device}", f"seed={seed}", f"total_timesteps={steps}",
                     "eval.every=0", "eval.episodes=10", *args.overrides],
                    out / f"{algo}_{env}_{device}_seed{seed}",
                )
                summary["steps_per_second"] = summary["env_steps"] / summary["train_seconds"]
                results[pair][device].append(summary)
                print(f"{pair:<16} {seed:>4} {device:>6} {summary['env_steps']:>9} {summary['train_seconds']:>8.1f} "
                      f"{summary['steps_per_second']:>8.0f} {summary['eval_return_mean']:>10.1f}", flush=True)

    print()
    ratio_name = f"{args.devices[-1]}/{args.devices[0]}" if len(args.devices) > 1 else "ratio"
    print("| pair | " + " | ".join(f"{d} steps/s" for d in args.devices) + f" | {ratio_name} | final evals |")
    print("|---|" + "---|" * (len(args.devices) + 2))
    for pair, by_device in results.items():
        rates = {d: statistics.median(r["steps_per_second"] for r in runs) for d, runs in by_device.items()}
        ratio = f"{rates[args.devices[-1]] / rates[args.devices[0]]:.2f}x" if len(args.devices) > 1 else ""
        finals = "; ".join(f"{d}: " + ", ".join(f"{r['eval_return_mean']:.1f}" for r in runs)
                           for d, runs in by_device.items())
        print(f"| {pair} | " + " | ".join(f"{rates[d]:.0f}" for d in args.devices) + f" | {ratio} | {finals} |")
    print(f"runs in {out}")


if __name__ == "__main__":
    main()
