"""`rlrun-collect`: write an offline dataset (rlrun.datasets' format) of a random policy or a trained run.

    rlrun-collect --out data.npz --transitions 50000 env=cartpole
    rlrun-collect --out data.npz --transitions 50000 --policy outputs/DAY/TIME_fqi_cartpole --epsilon 0.3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rlrun.config import ConfigError, config_dir
from rlrun.datasets import collect, save


def main(argv: list[str] | None = None) -> None:
    """The `rlrun-collect` command."""
    parser = argparse.ArgumentParser(
        prog="rlrun-collect",
        description="Write an offline dataset (.npz) of transitions for `rlrun algo=fqi algo.dataset=PATH`.",
    )
    parser.add_argument("--out", required=True, type=Path, help="the .npz file to write")
    parser.add_argument("--transitions", type=int, default=50_000, help="how many transitions (default 50000)")
    parser.add_argument("--policy", default="random", help="'random' or a finished run's directory (its env is used)")
    parser.add_argument("--epsilon", type=float, default=0.0, help="probability of a random action instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="env choice and keys, as for rlrun: env=acrobot (random policy)")
    args = parser.parse_args(argv)
    try:
        data, returns = _collect_from_args(args)
    except ConfigError as err:
        print(f"rlrun-collect: error: {err}", file=sys.stderr)
        sys.exit(2)
    save(args.out, data)
    shown = f"mean return {returns.mean():.1f} over {len(returns)} episodes" if len(returns) else "no finished episode"
    print(f"wrote {len(data['rewards'])} transitions to {args.out} ({shown})")


def _collect_from_args(args) -> tuple[dict, np.ndarray]:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from rlrun.checkpoint import MODEL_FILE, load_for_eval

    if args.transitions < 1:
        raise ConfigError("--transitions", args.transitions, "an integer >= 1")
    if not 0 <= args.epsilon <= 1:
        raise ConfigError("--epsilon", args.epsilon, "a number in [0, 1]")
    if args.policy == "random":
        try:
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                env_cfg = compose(config_name="config", overrides=args.overrides).env
        except HydraException as err:
            raise ConfigError("overrides", " ".join(args.overrides), f"env overrides as for rlrun ({err})") from None
        return collect(env_cfg, None, args.transitions, args.epsilon, args.seed)
    run_dir = Path(args.policy)
    if not (run_dir / MODEL_FILE).is_file():
        raise ConfigError("--policy", args.policy, f"'random' or a finished run's directory (with {MODEL_FILE})")
    act, cfg, _, _ = load_for_eval(run_dir / MODEL_FILE)  # the networks' own config, not .hydra's
    return collect(cfg.env, act, args.transitions, args.epsilon, args.seed)
