"""rlrun against Stable-Baselines3 (RL-Zoo hyperparameters), interleaved, same evaluation protocol.

    pip install -e ".[bench]"
    python scripts/benchmark.py --seeds 0 1 2 3 4 --out bench/

For every pairing and seed, rlrun and its SB3 counterpart run one after the other (the order
alternates by seed), each as its own process: the `rlrun` command, and this script started again
as an SB3 worker (`--sb3-worker`) that imports SB3, trains and exits. Both evaluate 10 deterministic
episodes every `eval_every` env steps on an env of their own, with evaluation time excluded from
training time, and both stop at the first evaluation that reaches the target. rlrun runs the command
a user types (`rlrun algo=... env=... eval.stop_at=...`), so with its own budget and the schedules
that follow it (an lr annealed over `total_timesteps`); SB3 stops at the pairing's budget.
Reported per pairing: median env steps and training seconds to the target, median env steps/s,
the median wall time of the whole process from its start to its exit (imports, set-up,
evaluations and files included: what a user waits for), and rlrun/SB3 ratios of each. The table is
printed and written as markdown and JSON. Both sides run torch with one thread (`--threads`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Pairing:
    name: str
    env_id: str
    threshold: float
    eval_every: int
    budget: int  # SB3's total_timesteps (rlrun keeps its config's)
    rlrun: list[str]
    sb3_algo: str
    sb3_kwargs: dict = field(default_factory=dict)
    sb3_envs: int = 1


def linear(start: float):
    """RL-Zoo's `lin_<start>` schedule: start * remaining progress."""
    return lambda progress_remaining: progress_remaining * start


# RL-Zoo hyperparameters (rl-baselines3-zoo, hyperparams/{ppo,a2c,dqn,sac}.yml).
PPO_ZOO = {
    "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0,
    "learning_rate": linear(0.001), "clip_range": linear(0.2),
}


def against_sb3_ppo(name: str, budget: int, rlrun: list[str]) -> Pairing:
    """An rlrun on-policy config against SB3 PPO (Zoo, 8 envs) on CartPole to 475."""
    return Pairing(name, "CartPole-v1", 475, 2000, budget, rlrun, "PPO", PPO_ZOO, sb3_envs=8)


PAIRINGS = [
    against_sb3_ppo("CartPole PPO", 100_000, ["algo=ppo", "env=cartpole"]),
    # rlrun's other on-policy candidate for "fastest to solve"
    against_sb3_ppo("CartPole REINFORCE", 100_000, ["algo=reinforce", "env=cartpole"]),
    # the same REINFORCE with 128 trajectories per step: rlrun's highest on-policy throughput
    against_sb3_ppo("CartPole REINFORCE wide", 300_000, ["experiment=reinforce_cartpole_wide"]),
    Pairing(
        "CartPole A2C", "CartPole-v1", 475, 2000, 500_000, ["algo=actor_critic", "env=cartpole"], "A2C",
        {"ent_coef": 0.0}, sb3_envs=8,
    ),
    Pairing(
        "CartPole DQN", "CartPole-v1", 475, 2000, 100_000, ["algo=fqi", "env=cartpole"], "DQN",
        {"learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000, "gamma": 0.99,
             "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
             "exploration_final_eps": 0.04, "policy_kwargs": {"net_arch": [256, 256]}},
    ),
    Pairing(
        "Pendulum SAC", "Pendulum-v1", -200, 1000, 20_000, ["algo=qtopt", "env=pendulum"], "SAC",
        {"learning_rate": 1e-3},
    ),
]


def first_reach(curve: list[tuple[int, float, float]], threshold: float):
    """(env steps, training seconds) at the first evaluation >= threshold, else (None, None)."""
    for step, value, seconds in curve:
        if value >= threshold:
            return step, seconds
    return None, None


def whole_process(cmd: list[str]) -> float:
    """Wall seconds of `cmd` from its start to its exit; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return seconds


def run_rlrun(p: Pairing, seed: int, out: Path, threads: int) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = out / f"rlrun_{p.name.replace(' ', '_')}_seed{seed}"
    cmd = [
        "rlrun", *p.rlrun, f"seed={seed}", f"eval.every={p.eval_every}",
        "eval.episodes=10", f"eval.stop_at={p.threshold}", f"threads={threads}", "log.progress=none",
        f"hydra.run.dir={run_dir}",
    ]
    whole_seconds = whole_process(cmd)
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # events in the run folder
    acc.Reload()
    sps = {e.step: e.value for e in acc.Scalars("charts/SPS")}
    curve = [(e.step, e.value, e.step / sps[e.step]) for e in acc.Scalars("eval/episodic_return")]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"curve": curve, "env_steps": summary["env_steps"], "train_seconds": summary["train_seconds"],
            "whole_seconds": whole_seconds}


def run_sb3_process(p: Pairing, seed: int, out: Path, threads: int) -> dict:
    """SB3 as a user runs it, in a fresh process of its own: this script as `--sb3-worker`."""
    result = out / f"sb3_{p.name.replace(' ', '_')}_seed{seed}.json"
    cmd = [sys.executable, __file__, "--sb3-worker", p.name, "--seed", str(seed), "--threads", str(threads),
           "--result", str(result)]
    whole_seconds = whole_process(cmd)
    return {**json.loads(result.read_text()), "whole_seconds": whole_seconds}


def run_sb3(p: Pairing, seed: int, threads: int) -> dict:
    import gymnasium as gym
    import numpy as np
    import stable_baselines3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(threads)
    eval_env = gym.make_vec(p.env_id, num_envs=10, vectorization_mode="sync")

    class TimedEval(BaseCallback):
        """Evaluate every `eval_every` steps; stop at the target; keep evaluation out of the clock."""

        def _on_training_start(self) -> None:
            self.start, self.excluded, self.next_eval, self.curve = time.perf_counter(), 0.0, p.eval_every, []

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            paused = time.perf_counter()
            train_seconds = paused - self.start - self.excluded
            mean = evaluate(self.model)
            self.excluded += time.perf_counter() - paused
            self.curve.append((self.num_timesteps, mean, train_seconds))
            self.next_eval += p.eval_every
            return mean < p.threshold

    def evaluate(model) -> float:
        obs, _ = eval_env.reset(seed=seed + 10_000)
        done, returns = np.zeros(10, bool), np.zeros(10)
        while not done.all():
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = eval_env.step(action)
            returns += reward * ~done
            done |= terminated | truncated
        return float(returns.mean())

    env = make_vec_env(p.env_id, n_envs=p.sb3_envs, seed=seed)
    model = getattr(stable_baselines3, p.sb3_algo)("MlpPolicy", env, seed=seed, device="cpu", **p.sb3_kwargs)
    callback = TimedEval()
    model.learn(total_timesteps=p.budget, callback=callback)
    train_seconds = time.perf_counter() - callback.start - callback.excluded
    return {"curve": callback.curve, "env_steps": model.num_timesteps, "train_seconds": train_seconds}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return None if a is None or b is None else a / b


def fmt(v, spec=".3g"):
    return "-" if v is None else format(v, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--only", nargs="*", default=None, help="pairing names to run (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--sb3-worker", metavar="PAIRING", help=argparse.SUPPRESS)  # one SB3 run: --seed, --result
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_worker:
        pairing = next(p for p in PAIRINGS if p.name == args.sb3_worker)
        args.result.write_text(json.dumps(run_sb3(pairing, args.seed, args.threads)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(tempfile.mkdtemp(prefix="rlrun-bench-"))

    results = {}
    for p in PAIRINGS:
        if args.only and p.name not in args.only:
            continue
        rows = {"rlrun": [], "sb3": []}
        for i, seed in enumerate(args.seeds):
            order = ["rlrun", "sb3"] if i % 2 == 0 else ["sb3", "rlrun"]
            for side in order:
                if side == "rlrun":
                    run = run_rlrun(p, seed, runs_dir, args.threads)
                else:
                    run = run_sb3_process(p, seed, runs_dir, args.threads)
                steps, seconds = first_reach(run["curve"], p.threshold)
                row = {"seed": seed, "steps_to_target": steps, "seconds_to_target": seconds,
                       "steps_per_second": run["env_steps"] / run["train_seconds"], "env_steps": run["env_steps"],
                       "whole_seconds": run["whole_seconds"], "reached": steps is not None}
                rows[side].append(row)
                print(f"{p.name:14s} {side:5s} seed {seed}: steps {fmt(steps, 'd') if steps else '-'}, "
                      f"seconds {fmt(seconds, '.1f')}, steps/s {row['steps_per_second']:.0f}, "
                      f"whole process {row['whole_seconds']:.1f} s", flush=True)
        results[p.name] = {"threshold": p.threshold, "sb3_algo": p.sb3_algo, "rlrun_args": p.rlrun, **rows}

    lines = [
        "| pairing | side | reached | median steps | median seconds | median steps/s | median whole process s |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = ("steps_to_target", "seconds_to_target", "steps_per_second", "whole_seconds")
    for name, r in results.items():
        med = {}
        for side in ("rlrun", "sb3"):
            rows = r[side]
            med[side] = [median([x[k] for x in rows]) for k in keys]
            reached = sum(x["steps_to_target"] is not None for x in rows)
            label = " ".join(r["rlrun_args"]) if side == "rlrun" else f"SB3 {r['sb3_algo']}"
            lines.append(f"| {name} | {label} | {reached}/{len(rows)} | {fmt(med[side][0], '.0f')} | "
                         f"{fmt(med[side][1], '.2f')} | {fmt(med[side][2], '.0f')} | {fmt(med[side][3], '.2f')} |")
        ratios = [ratio(a, b) for a, b in zip(med["rlrun"], med["sb3"])]
        r["medians"] = {side: dict(zip(keys, values)) for side, values in med.items()}
        r["ratios"] = dict(zip(("steps", "seconds", "steps_per_second", "whole_seconds"), ratios))
        lines.append(f"| {name} | rlrun/SB3 | | {fmt(ratios[0], '.2f')}x | {fmt(ratios[1], '.2f')}x | "
                     f"{fmt(ratios[2], '.1f')}x | {fmt(ratios[3], '.2f')}x |")
    table = "\n".join(lines)
    print(table)
    (args.out / "benchmark.md").write_text(table + "\n")
    (args.out / "benchmark.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
