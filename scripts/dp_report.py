"""Evidence for policy and value iteration: exactness, V(start) against sampled episodes, and cost.

    python scripts/dp_report.py check env=frozenlake env.map_name=8x8
    python scripts/dp_report.py check --gamma 0.95 --episodes 2000 env=cliffwalking
    python scripts/dp_report.py timing --repeats 3

`check` solves the env its rlrun overrides name (one with a known model: frozenlake, taxi,
cliffwalking, or env=gym env.id=... of another) with value iteration and with policy iteration (exact evaluation), then
prints the largest |V - V^pi| where V^pi solves the linear system of VI's own greedy policy,
how far PI's V is from that, and V(start) beside the greedy policy's sampled episodes: their mean
discounted return, their success rate (return > 0), and that policy's exact probability of
succeeding within the time limit (finite-horizon evaluation), each sampled figure with its
standard error.

`timing` prints iterations and seconds (median of --repeats, one process, one solve at a time)
for each algorithm on FrozenLake 8x8, Taxi and CliffWalking: the whole `iterate()` loop, the heat
maps drawn in it (iterations 1, 2, 4, ... and the last), and the rest (the box itself).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from hydra import compose, initialize_config_dir

from rlrun import envs
from rlrun.algos import dynamic_programming
from rlrun.build import build
from rlrun.config import ConfigError, config_dir
from rlrun.data import sample_trajectories

ENVS = {
    "frozenlake 8x8": ["env=frozenlake", "env.map_name=8x8"],
    "taxi": ["env=taxi"],
    "cliffwalking": ["env=cliffwalking"],
}
ALGOS = {
    "value_iteration": ["algo=value_iteration"],
    "policy_iteration exact": ["algo=policy_iteration"],
    "policy_iteration iterative": ["algo=policy_iteration", "algo.evaluation=iterative"],
}
picture_seconds = 0.0


def timed_pictures(draw):
    """value_picture, with the time it takes added to `picture_seconds`."""

    def wrapper(*args, **kwargs):
        global picture_seconds
        start = time.perf_counter()
        picture = draw(*args, **kwargs)
        picture_seconds += time.perf_counter() - start
        return picture

    return wrapper


dynamic_programming.value_picture = timed_pictures(dynamic_programming.value_picture)


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def solve(overrides: list[str]):
    """(algorithm after convergence, seconds of its iterate() loop, seconds of pictures in it)."""
    global picture_seconds
    algo = build(composed(overrides))
    picture_seconds = 0.0
    start = time.perf_counter()
    while not algo.finished:
        algo.iterate(algo.iteration)
    return algo, time.perf_counter() - start, picture_seconds


def policy_value(algo, pi: np.ndarray, gamma: float, horizon: int | None = None) -> np.ndarray:
    """V^pi exactly: the solution of V = r_pi + gamma P_pi V, or `horizon` steps of that recursion."""
    r_pi, P_pi = algo.model.policy_model(pi)
    if horizon is None:
        return np.linalg.solve(np.eye(len(r_pi)) - gamma * P_pi, r_pi)
    V = np.zeros_like(r_pi)
    for _ in range(horizon):
        V = r_pi + gamma * P_pi @ V
    return V


def check(args) -> None:
    common = [f"algo.gamma={args.gamma}", *args.overrides]
    vi = solve(["algo=value_iteration", *common])[0]
    pi = solve(["algo=policy_iteration", *common])[0]
    exact = policy_value(vi, vi.pi, args.gamma)
    live = ~vi.model.unreachable
    print(f"{' '.join(common)}")
    print(f"value iteration:  {vi.iteration} sweeps, max |V_VI - V^pi_VI| = {np.abs(vi.V - exact)[live].max():.2e}")
    print(
        f"policy iteration: {pi.iteration} steps,  max |V_PI - V^pi_VI| = {np.abs(pi.V - exact)[live].max():.2e}, "
        f"greedy actions differing from VI's: {int((pi.pi != vi.pi)[live & ~vi.model.terminal].sum())}"
    )

    env = envs.make_vec_env(composed(["algo=value_iteration", *common]).env, args.episodes)
    batch = sample_trajectories(env, vi.act, seed=args.seed)
    discounts = args.gamma ** np.arange(len(batch.rewards))[:, None]
    discounted = (discounts * batch.rewards).sum(0)
    success = batch.episode_returns > 0
    horizon = vi.env.spec.max_episode_steps
    start = int(env.reset(seed=args.seed)[0][0])
    n = args.episodes
    print(f"{n} episodes of VI's greedy policy from state {start} (time limit {horizon}):")
    print(f"  {f'V(start), gamma={args.gamma}:':<42}{vi.V[start]:.4f}")
    print(
        f"  mean discounted return of the episodes:   {discounted.mean():.4f} ± {discounted.std(ddof=1) / n**0.5:.4f} (1 s.e.)"
    )
    print(f"  V(start) with the time limit (exact):     {policy_value(vi, vi.pi, args.gamma, horizon)[start]:.4f}")
    print(
        f"  success rate of the episodes:             {success.mean():.4f} ± {success.std(ddof=1) / n**0.5:.4f} (1 s.e.)"
    )
    print(f"  P(success within the time limit) (exact): {policy_value(vi, vi.pi, 1.0, horizon)[start]:.4f}")
    print(f"  mean episode length: {batch.episode_lengths.mean():.1f}, truncated: {int(batch.truncated.any(0).sum())}")


def timing(args) -> None:
    print(
        f"{'env':<15} {'algorithm':<27} {'iterations':>10} {'seconds':>8} {'pictures':>8} {'the rest':>8}  (median of {args.repeats})"
    )
    for env_name, env in ENVS.items():
        for algo_name, algo in ALGOS.items():
            runs = [solve([*algo, *env, f"algo.gamma={args.gamma}"]) for _ in range(args.repeats)]
            print(
                f"{env_name:<15} {algo_name:<27} {runs[0][0].iteration:>10d} "
                f"{statistics.median(r[1] for r in runs):>8.3f} {statistics.median(r[2] for r in runs):>8.3f} "
                f"{statistics.median(r[1] - r[2] for r in runs):>8.3f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["check", "timing"], help="check: one env in depth; timing: three envs' cost")
    parser.add_argument("--gamma", type=float, default=0.99, help="discount of both algorithms (default 0.99)")
    parser.add_argument("--episodes", type=int, default=1000, help="sampled episodes (check; default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled episodes (check; default 0)")
    parser.add_argument("--repeats", type=int, default=3, help="solves per row (timing; default 3)")
    parser.add_argument(
        "overrides", nargs="*", help="rlrun overrides naming the env to check, e.g. env=frozenlake env.map_name=8x8"
    )
    args = parser.parse_intermixed_args()
    if args.what == "check" and not any(o.startswith("env=") for o in args.overrides):
        parser.error("check needs the env to solve, one with a known model: e.g. check env=frozenlake env.map_name=8x8")
    try:
        check(args) if args.what == "check" else timing(args)
    except ConfigError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
