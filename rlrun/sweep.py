"""What a sweep needs beyond one run: folder names, several seeds per job, and jobs that fail alone.

A failing job of a sweep (`rlrun -m ...`) does not stop the others: its error goes to its own log
and to `failed.json` in its folder, it returns no value (None: Optuna marks that trial failed and
goes on), and `SweepHooks` lists every failed job with its overrides and log once the sweep is over.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from rlrun import config
from rlrun.config import ConfigError

log = logging.getLogger("rlrun")

FAILED_FILE = "failed.json"


def setting_dirname(override_dirname: str, fallback: str) -> str:
    """A sweep job's setting folder: its overrides (seed excluded), or `fallback` when it has none,
    so `rlrun -m seed=0,1,2` gives `<algo>_<env>/seed=0`, never a path that starts with a slash."""
    return override_dirname or fallback


OmegaConf.register_new_resolver("rlrun.setting", setting_dirname, replace=True)


def train_seeds(cfg: DictConfig, run_dir: Path) -> float:
    """Train with `seeds` seeds (seed, seed+1, ...) one after another; return their mean final
    eval return. With one seed the run is `run_dir` itself, otherwise `run_dir/seed=<n>` each,
    with its own `.hydra/config.yaml` so `rlrun-compare` groups them like any other runs."""
    from rlrun import runner  # torch only once the command line has been parsed

    config.check(cfg, config.RULES)
    if cfg.seeds == 1:
        return runner.train(cfg, run_dir)
    returns = []
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        seed_cfg = OmegaConf.merge(cfg, {"seed": seed, "seeds": 1})
        seed_dir = run_dir / f"seed={seed}"
        (seed_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(seed_cfg, seed_dir / ".hydra" / "config.yaml")
        returns.append(runner.train(seed_cfg, seed_dir))
    return sum(returns) / len(returns)


def isolated(train: Callable[[], float], run_dir: Path) -> float | None:
    """Run one sweep job; on any error, log it, write `failed.json` and return None instead of
    raising, so the launcher goes on with the other jobs. (Not NaN: Optuna 2's sweeper crashes on
    a NaN objective; a value that is not a number it records as a failed trial.)"""
    (run_dir / FAILED_FILE).unlink(missing_ok=True)  # a job run again in its folder reports afresh
    try:
        return train()
    except Exception as err:  # any failure of one job must leave the sweep running
        if isinstance(err, ConfigError):
            log.error("rlrun: error: %s", err)
            message = f"rlrun: error: {err}"
        else:
            log.exception("job failed")
            message = f"{type(err).__name__}: {err}"
        hydra_cfg = HydraConfig.get()
        record = {
            "overrides": list(hydra_cfg.overrides.task),
            "error": message,
            "log": str(hydra_cfg.job_logging.handlers.file.filename),
        }
        (run_dir / FAILED_FILE).write_text(json.dumps(record, indent=2))
        return None


class SweepHooks(Callback):
    """Folder names by what the sweep varies; at the end, which jobs failed (exit code 1 if any)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Leave the keys given one value for every job out of the setting folders' names
        (`algo=reinforce/seed=0`, not `algo=reinforce,total_timesteps=20000/seed=0`). Each job's
        config is composed again from the sweep's Hydra overrides, so the exclusion goes there."""
        overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        fixed = [o.key_or_group for o in overrides if not o.is_sweep_override()]
        if fixed:
            exclude = [*config.hydra.job.config.override_dirname.exclude_keys, *fixed]
            with read_write(config.hydra.overrides):
                config.hydra.overrides.hydra.append(
                    f"hydra.job.config.override_dirname.exclude_keys=[{','.join(exclude)}]"
                )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        failed = [json.loads(p.read_text()) for p in sorted(sweep_dir.rglob(FAILED_FILE))]
        if not failed:
            log.info("sweep finished in %s; compare its runs with: rlrun-compare %s", sweep_dir, sweep_dir)
            return
        lines = [f"rlrun: {len(failed)} job(s) of the sweep in {sweep_dir} failed; the others finished:"]
        for record in failed:
            lines.append(f"  {' '.join(record['overrides'])}")
            lines.append(f"    {record['error']}")
            lines.append(f"    log: {record['log']}")
        print("\n".join(lines), file=sys.stderr)
        sys.exit(1)
