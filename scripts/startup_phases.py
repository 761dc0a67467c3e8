"""Where the seconds of one `rlrun` command go, phase by phase, from the process's start to its exit.

    python scripts/startup_phases.py                          # reinforce on CartPole to 475, 5 rounds
    python scripts/startup_phases.py --rounds 3 -- algo=ppo env=cartpole eval.stop_at=475 eval.every=2000

Each round starts `rlrun ARGS` afresh, through a small driver that times the command's own steps
(by wrapping the functions that do them, which changes nothing they compute), and once more
`python -c "import torch"`, the floor the issue names: a process that only imports torch and exits.
Phases, in the order they happen:

    python start      the interpreter, up to the driver's first line
    import rlrun.cli  Hydra, OmegaConf, gymnasium and rlrun's own modules
    hydra             Hydra's plugins and search path, composing and checking the config, writing .hydra/
    import torch      torch itself
    import runner     what the runner imports beyond torch (TensorBoard's writer, checkpointing)
    build             the algorithm, its networks and envs, evaluation's envs, the event file: up to the
                      first iteration
    training          the algorithm's iterations (what `train_seconds` counts)
    evaluation        every evaluation's episodes
    bookkeeping       logging, checkpoints, best model, summary: the rest of the run
    exit              from the command's end to the process's end, as the parent sees it

Prints every round's phases and their medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

PHASES = ("python start", "import rlrun.cli", "hydra", "import torch", "import runner", "build", "training",
          "evaluation", "bookkeeping", "exit")

DRIVER = r"""
import json, sys, time
marks = {"start": time.time()}
import rlrun.cli as cli
marks["cli"] = time.time()
from rlrun import sweep
train_seeds, totals = sweep.train_seeds, {"training": 0.0, "evaluation": 0.0}

def timed(total, fn):
    def wrapper(*args, **kwargs):
        marks.setdefault("first_" + total, time.time())
        begin = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[total] += time.perf_counter() - begin
    return wrapper

def traced_train_seeds(*args, **kwargs):
    marks["composed"] = time.time()
    import torch
    marks["torch"] = time.time()
    from rlrun import evaluation, runner
    marks["runner"] = time.time()
    runner.iterate = timed("training", runner.iterate)
    evaluation.Evaluator.__call__ = timed("evaluation", evaluation.Evaluator.__call__)
    return train_seeds(*args, **kwargs)

cli.sweep.train_seeds = traced_train_seeds
main = cli.main

def traced_main():
    try:
        main()
    finally:
        marks["end"] = time.time()
        print("PHASES " + json.dumps({**marks, **totals}), file=sys.stderr, flush=True)

cli.main = traced_main  # what the command calls, so it ends as the command does
sys.argv[0] = "rlrun"
getattr(cli, "command", traced_main)()  # an older rlrun without `command` exits as Python does
"""


def run_phases(args: list[str]) -> dict[str, float]:
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, check=False)
    end = time.time()
    line = next((x for x in proc.stderr.splitlines() if x.startswith("PHASES ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"rlrun {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    m = json.loads(line.removeprefix("PHASES "))
    looping = m["end"] - m["first_training"]  # from the first iteration to the command's end
    return {
        "python start": m["start"] - start,
        "import rlrun.cli": m["cli"] - m["start"],
        "hydra": m["composed"] - m["cli"],
        "import torch": m["torch"] - m["composed"],
        "import runner": m["runner"] - m["torch"],
        "build": m["first_training"] - m["runner"],
        "training": m["training"],
        "evaluation": m["evaluation"],
        "bookkeeping": looping - m["training"] - m["evaluation"],
        "exit": end - m["end"],
    }


def torch_floor() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("rlrun_args", nargs="*", default=["algo=reinforce", "env=cartpole", "eval.stop_at=475",
                                                          "eval.every=2000"])
    args = parser.parse_args()
    rows, floors = [], []
    print(" ".join(f"{p:>16}" for p in (*PHASES, "whole", "import torch alone")))
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as run_dir:
            row = run_phases([*args.rlrun_args, "log.progress=none", f"hydra.run.dir={run_dir}"])
        floors.append(torch_floor())
        row["whole"] = sum(row.values())
        rows.append(row)
        print(" ".join(f"{row[p]:>16.2f}" for p in (*PHASES, "whole")) + f" {floors[-1]:>16.2f}", flush=True)
    med = {p: statistics.median(r[p] for r in rows) for p in (*PHASES, "whole")}
    print(" ".join(f"{med[p]:>16.2f}" for p in (*PHASES, "whole")) + f" {statistics.median(floors):>16.2f}  (medians)")
    floor = statistics.median(floors)
    print(f"whole command {med['whole']:.2f} s; `python -c \"import torch\"` {floor:.2f} s; the command beyond that "
          f"floor: {med['whole'] - floor:.2f} s, of which training {med['training']:.2f} s and evaluation "
          f"{med['evaluation']:.2f} s")


if __name__ == "__main__":
    main()
