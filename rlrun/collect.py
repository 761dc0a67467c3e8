"""`rlrun-collect`: write an offline dataset (rlrun.datasets' format) of whole episodes from a random
policy, a finished run, or a mix of them, and print the behaviour policy's return.

    rlrun-collect --out random.npz --episodes 100 env=cartpole
    rlrun-collect --out expert.npz --episodes 50 --policy outputs/DAY/TIME_ppo_cartpole
    rlrun-collect --out noisy.npz --episodes 50 --policy RUN --epsilon 0.3
    rlrun-collect --out mixed.npz --policy RUN --policy random --episodes 20,200
    rlrun-collect --out minari:cartpole/expert-v0 --episodes 50 --policy RUN      (the minari extra)

Each `--policy` is one source, in the order given; `--episodes`, `--transitions` and `--epsilon` take
one value for every source or a comma-separated value per source. With `--transitions` a source
records episodes until it has that many steps and cuts the last one there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rlrun import memory
from rlrun.config import MAX_TRANSITIONS, ConfigError, config_dir
from rlrun.datasets import MINARI_PREFIX, collect, concatenate, save

RANDOM = "random"
AMOUNT = f"an integer in [1, {MAX_TRANSITIONS}]"  # episodes or transitions per source
SOURCE_SEED_STRIDE = 1000  # source k resets its envs from seed + 1000 k: no two sources share a start state


@dataclass
class Source:
    """One behaviour policy of the dataset and how much of it to record."""

    policy: str  # "random" or a run directory
    episodes: int | None
    transitions: int | None
    epsilon: float

    def describe(self) -> str:
        return self.policy + (f" (epsilon {self.epsilon:g})" if self.epsilon and self.policy != RANDOM else "")


def main(argv: list[str] | None = None) -> None:
    """The `rlrun-collect` command."""
    parser = argparse.ArgumentParser(
        prog="rlrun-collect",
        description="Write an offline dataset (.npz) of whole episodes for `rlrun algo=... algo.dataset=PATH`.",
    )
    parser.add_argument("--out", required=True, help="the .npz file to write, or minari:DATASET_ID")
    parser.add_argument(
        "--policy",
        action="append",
        help="'random' or a finished run's directory (its env is used); repeat it to mix sources (default: random)",
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--episodes", help="whole episodes per source: N, or N1,N2,... one per --policy")
    amount.add_argument("--transitions", help="transitions per source (default 50000), the last episode cut there")
    parser.add_argument("--epsilon", default="0", help="probability of a random action instead: E, or one per source")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="env choice and keys, as for rlrun: env=acrobot (random policy)")
    args = parser.parse_args(argv)
    try:
        check_out(args.out)
        data, returns, env_cfg = _collect_from_args(args)
        save_to(args.out, data, env_cfg)
    except ConfigError as err:
        print(f"rlrun-collect: error: {err}", file=sys.stderr)
        sys.exit(2)
    episodes = len(np.unique(data["episode_ids"]))
    print(
        f"wrote {len(data['rewards'])} transitions in {episodes} episodes to {args.out} "
        f"(behaviour policy: {_shown(np.concatenate(returns))})"
    )


def _shown(returns: np.ndarray) -> str:
    if not len(returns):
        return "no whole episode"
    return f"mean return {returns.mean():.1f} ± {returns.std():.1f} over {len(returns)} whole episodes"


def save_to(out: str, data: dict, env_cfg: DictConfig) -> None:
    """Write the dataset; a full disk (or a folder gone since `check_out`) is one line, and the
    half-written file is already removed (rlrun.datasets writes through a temporary name)."""
    try:
        save(out, data, env_cfg)
    except OSError as err:
        raise ConfigError("--out", out, f"a path rlrun-collect can write the dataset to ({err.strerror})") from None


def check_out(out: str) -> None:
    """--out's folder must exist and take files: found out before collecting, not after."""
    if out.startswith(MINARI_PREFIX):  # Minari keeps its datasets in its own folder
        return
    if Path(out).is_dir():
        raise ConfigError("--out", out, "a file path for the .npz dataset (this is a folder)")
    try:
        tempfile.TemporaryFile(dir=Path(out).parent).close()
    except OSError as err:
        raise ConfigError("--out", out, f"a path in an existing folder rlrun-collect can write to ({err.strerror})") from None


def per_source(key: str, text: str, sources: int, parse, allowed: str, ok) -> list:
    """One value for each of `sources` sources from "v" (the same for all) or "v1,v2,..."."""
    try:
        values = [parse(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= sources
    if len(values) != sources or not all(ok(v) for v in values):
        raise ConfigError(key, text, f"{allowed}, or {sources} of them separated by commas (one per --policy)")
    return values


def sources_from_args(args) -> list[Source]:
    policies = args.policy or [RANDOM]
    n = len(policies)
    epsilons = per_source("--epsilon", args.epsilon, n, float, "a number in [0, 1]", lambda e: 0 <= e <= 1)
    if args.episodes is not None:
        episodes = per_source("--episodes", args.episodes, n, int, AMOUNT, lambda v: 1 <= v <= MAX_TRANSITIONS)
        return [Source(p, e, None, eps) for p, e, eps in zip(policies, episodes, epsilons)]
    transitions = per_source("--transitions", args.transitions or "50000", n, int, AMOUNT, lambda v: 1 <= v <= MAX_TRANSITIONS)
    return [Source(p, None, t, eps) for p, t, eps in zip(policies, transitions, epsilons)]


def _collect_from_args(args) -> tuple[dict, list[np.ndarray], DictConfig]:
    from rlrun.checkpoint import MODEL_FILE, load_for_eval

    sources = sources_from_args(args)
    policies = {}
    for source in sources:
        if source.policy != RANDOM and source.policy not in policies:
            if not (Path(source.policy) / MODEL_FILE).is_file():
                raise ConfigError(
                    "--policy", source.policy, f"'random' or a finished run's directory (with {MODEL_FILE})"
                )
            policies[source.policy] = load_for_eval(Path(source.policy) / MODEL_FILE)[:2]  # the networks' own config
    env_cfg = _env_of(args.overrides, policies)
    check_memory(args.transitions, sources, env_cfg)
    parts, returns = [], []
    for k, source in enumerate(sources):
        act = None if source.policy == RANDOM else policies[source.policy][0]
        seed = args.seed + SOURCE_SEED_STRIDE * k
        data, source_returns = collect(env_cfg, act, source.transitions, source.epsilon, seed, episodes=source.episodes)
        if len(sources) > 1:
            print(f"{source.describe()}: {len(data['rewards'])} transitions, {_shown(source_returns)}")
        parts.append(data)
        returns.append(source_returns)
    return concatenate(parts), returns, env_cfg


def check_memory(text: str | None, sources: list[Source], env_cfg: DictConfig) -> None:
    """The transitions asked for, held twice while they are put together, must fit in memory."""
    planned = sum(source.transitions or 0 for source in sources)
    if planned:
        size = 2 * planned * memory.transition_bytes(*memory.env_spaces(env_cfg))
        memory.check([memory.Need("--transitions", text or "50000", size, f"{planned} transitions, twice over")])


def _env_of(overrides: list[str], policies: dict) -> DictConfig:
    """The runs' env (all runs must share one), or for random sources alone the env the overrides choose."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    if policies:
        if overrides:
            raise ConfigError("overrides", " ".join(overrides), "none with --policy RUN: the run's own env is used")
        (first, (_, cfg)), *others = policies.items()
        for run, (_, other) in others:
            if OmegaConf.to_container(other.env) != OmegaConf.to_container(cfg.env):
                raise ConfigError("--policy", run, f"a run on the same env as {first} ({cfg.env.name})")
        return cfg.env
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(config_name="config", overrides=overrides).env
    except HydraException as err:
        raise ConfigError("overrides", " ".join(overrides), f"env overrides as for rlrun ({err})") from None


if __name__ == "__main__":
    main()
