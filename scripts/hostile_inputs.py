"""A battery of bad inputs, each held to the README's standard: exit code 2, one line on stderr, no
traceback, and no run folder that looks finished (no summary.json, no model.pt).

    python scripts/hostile_inputs.py            # every case, a line each, then the count
    python scripts/hostile_inputs.py -k dataset # only the cases whose command contains "dataset"

Each case runs in a fresh temporary folder (its run goes to hydra.run.dir=<tmp>/run); files a case
needs (a damaged checkpoint, a bad dataset, a module on the working directory) are made there first.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RUN = "hydra.run.dir={tmp}/run"

# (command, a file to make first: name -> bytes or a callable writing it)
CASES: list[str] = [
    # values the rules refuse
    "rlrun algo.gamma=1.5",
    "rlrun algo.gamma=abc",
    "rlrun algo.lr=-1",
    "rlrun algo.N=0",
    "rlrun algo.N=1000000000000",
    "rlrun seed=-1",
    "rlrun seed=4294967296",
    "rlrun seed=1.5",
    "rlrun total_timesteps=0",
    "rlrun total_timesteps=abc",
    "rlrun eval.episodes=0",
    "rlrun eval.episodes=1000000000",
    "rlrun eval.every=-5",
    "rlrun device=tpu",
    "rlrun device=cuda",
    "rlrun threads=0",
    "rlrun algo.baseline=median",
    "rlrun algo.hidden_sizes=[100000,100000]",
    "rlrun algo.activation=gelu",
    "rlrun algo=fqi algo.buffer_size=1000000000000",
    "rlrun algo=fqi algo.batch_size=0",
    "rlrun algo=fqi env=pendulum",
    "rlrun algo=qtopt env=cartpole",
    "rlrun algo=qtopt env=pendulum algo.cem_samples=100000000",
    "rlrun algo=qtopt env=pendulum algo.cem_elites=100",
    "rlrun algo=ppo algo.clip_coef=-0.2",
    "rlrun algo=ppo algo.num_envs=3 algo.minibatch_size=1000000",
    "rlrun algo=value_iteration env=cartpole",
    "rlrun algo=bc",
    "rlrun algo=bc algo.dataset=/no/such.npz",
    "rlrun algo=dagger",
    "rlrun algo=dagger algo.expert=/no/such/run",
    "rlrun algo=fqi env=bitflip algo.her.strategy=later",
    "rlrun algo=fqi algo.her.strategy=future",
    "rlrun task=cartpole_dynamics task.observe=onehot",
    "rlrun task=point_goals algo=fqi",
    # Hydra's own composition errors and unknown keys
    "rlrun algo=nonexistent",
    "rlrun env=nonexistent",
    "rlrun algo=",
    "rlrun unknown_key=1",
    "rlrun algo.lrr=0.1",
    "rlrun +algo.lrr=0.1",
    "rlrun algo.gamma",
    "rlrun 'algo.hidden_sizes=[64,'",
    # environments
    "rlrun env.max_episode_steps=0",
    "rlrun env.max_episode_steps=-5",
    "rlrun env=frozenlake env.map_name=9x9",
    "rlrun env=frozenlake env.is_slippery=maybe",
    "rlrun env.kwargs=notadict",
    "rlrun env=gym env.id=NoSuchEnv-v0",
    "rlrun env=gym env.id=Blackjack-v1",
    "rlrun env=pendulum +env.g=abc",
    "rlrun env=gym env.id=evilmod:Evil-v0",
    # resume
    "rlrun resume=/no/such/run",
    "rlrun resume={tmp}",
    "rlrun resume={tmp}/damaged",
    # rlrun-eval, rlrun-collect, rlrun-compare
    "rlrun-eval /no/such/run",
    "rlrun-eval {tmp}/damaged/checkpoints/step_000000001000.pt",
    "rlrun-eval {tmp}/foreign.pt",
    "rlrun-eval {tmp}/damaged episodes=0",
    "rlrun-eval {tmp}/damaged speed=2",
    "rlrun-collect --out /no/such/folder/d.npz --episodes 2",
    "rlrun-collect --out {tmp}/d.npz --transitions 1000000000000",
    "rlrun-collect --out {tmp}/d.npz --epsilon 2",
    "rlrun-collect --out {tmp}/d.npz --policy /no/such/run",
    "rlrun-compare /no/such/folder",
    "rlrun-compare {tmp} --metric nonsense",
    # damaged or foreign datasets
    "rlrun algo=fqi algo.n_step=1 algo.dataset={tmp}/npy_as.npz",
    "rlrun algo=fqi algo.n_step=1 algo.dataset={tmp}/scalars.npz",
    "rlrun algo=bc algo.dataset={tmp}/empty.npz",
]


def make_files(tmp: Path) -> None:
    """The damaged and foreign files the cases name."""
    (tmp / "damaged" / "checkpoints").mkdir(parents=True)
    (tmp / "damaged" / "checkpoints" / "step_000000001000.pt").write_bytes(b"")
    (tmp / "damaged" / "summary.json").write_text("{not json")
    import torch

    torch.save({"weights": torch.zeros(3)}, tmp / "foreign.pt")
    with open(tmp / "npy_as.npz", "wb") as f:
        np.save(f, np.zeros(3))
    np.savez(tmp / "scalars.npz", **{k: np.array(0.0) for k in
                                     ("observations", "actions", "rewards", "next_observations", "terminated", "truncated")})
    (tmp / "empty.npz").write_bytes(b"")


def check(command: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        make_files(tmp)
        argv = shlex.split(command.format(tmp=tmp))
        if argv[0] == "rlrun" and not any(a.startswith("resume=") for a in argv):
            argv.append(RUN.format(tmp=tmp))
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp, timeout=120, check=False)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        finished = any((tmp / "run" / name).exists() for name in ("summary.json", "model.pt"))
        problems = []
        if proc.returncode != 2:
            problems.append(f"exit code {proc.returncode}")
        if "Traceback" in proc.stderr:
            problems.append("a traceback")
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        if finished:
            problems.append("a run that looks finished")
        shown = lines[-1] if lines else proc.stdout.strip().splitlines()[-1:] or [""]
        return not problems, "; ".join(problems) or (shown if isinstance(shown, str) else shown[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default="", help="only the cases whose command contains this")
    args = parser.parse_args()
    cases = [c for c in CASES if args.k in c]
    passed = 0
    for command in cases:
        ok, said = check(command)
        passed += ok
        print(f"{'ok  ' if ok else 'FAIL'} {command}\n       {said[:160]}", flush=True)
    print(f"{passed}/{len(cases)} meet the standard")
    sys.exit(0 if passed == len(cases) else 1)


if __name__ == "__main__":
    main()
