"""What a sweep needs beyond one run: folder names (a single run's too), several seeds per job, and
jobs that fail alone.

A failing job of a sweep (`rlrun -m ...`) does not stop the others: its error goes to its own log
and to `failed.json` in its folder, it returns no value (None: Optuna marks that trial failed and
goes on), and `SweepHooks` lists every failed job with its overrides and log once the sweep is over,
after every finished run's final eval return (jobs of a SLURM or submitit launcher print theirs only
to their own logs).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

import rlrun
from rlrun import config
from rlrun.config import ConfigError

log = logging.getLogger("rlrun")

FAILED_FILE = "failed.json"
SUMMARY_FILE = "summary.json"  # rlrun.runner.SUMMARY_FILE, repeated to keep torch out of the sweep's own process
# The submitit launcher that submits to SLURM (launcher=slurm), and what it needs; its `local` twin runs anywhere.
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
SLURM_COMMANDS = ("srun", "sbatch")


# What a single run's folder name leaves out of the keys its command line sets: the seed (runs of one
# setting differ only in it), the keys that do not change what is trained (rlrun-compare leaves them
# out too) and the sweep presets. algo=, env= and env.id= are left out where the name already says them.
RUN_NAME_SKIPPED = ("seed", "seeds", "resume", "device", "threads", "launcher", "search")
RUN_NAME_SKIPPED_SECTIONS = ("eval.", "log.", "checkpoint.", "hydra.")
NAME_MAX = 120  # characters of one folder name; a longer one is cut and ends in a hash of the whole
UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+-]")


def safe_name(name: str) -> str:
    """`name` as one folder name that needs no quoting: any character but letters, digits and
    `_.,=+-` becomes `_` (a `/` in a value would nest folders), and a name over NAME_MAX characters
    is cut and ends in a hash of the whole, so two long names stay apart."""
    safe = UNSAFE.sub("_", name)
    if len(safe) > NAME_MAX:
        safe = f"{safe[: NAME_MAX - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return safe


def setting_dirname(override_dirname: str, fallback: str) -> str:
    """A sweep job's setting folder: its overrides (seed excluded), or `fallback` when it has none,
    so `rlrun -m seed=0,1,2` gives `<algo>_<env>/seed=0`, never a path that starts with a slash."""
    return safe_name(override_dirname or fallback)


def seed_dirname(seed: Any, seeds: Any) -> str:
    """Beneath the setting folder: `seed=<n>` for a job of one seed; a job of several (`seeds=3`)
    gets `seeds=<first>-<last>`, and `train_seeds` puts each seed's run in `seed=<n>` inside it."""
    several = isinstance(seeds, int) and isinstance(seed, int) and seeds > 1  # other values: refused later
    return f"seeds={seed}-{seed + seeds - 1}" if several else f"seed={seed}"


def run_dirname(algo: str, env: str, overrides: Any) -> str:
    """A single run's folder name after its time: `<algo>_<env>`, then, as Hydra's override_dirname
    writes them, the keys the command line sets that change what is trained
    (`ppo_pendulum_algo.lr=0.01,experiment=ppo_pendulum`), so runs of different settings differ."""
    shown = []
    for override in OverridesParser.create().parse_overrides([str(o) for o in overrides]):
        key = override.key_or_group
        if key in RUN_NAME_SKIPPED or key.startswith(RUN_NAME_SKIPPED_SECTIONS):
            continue
        named = {"algo": algo, "env": env, "env.id": env}.get(key)  # what the name says already
        if named is not None and not override.is_sweep_override() and override.get_value_element_as_str() == named:
            continue
        shown.append(override.input_line)
    return safe_name("_".join([str(algo), str(env), *([",".join(sorted(shown))] if shown else [])]))


OmegaConf.register_new_resolver("rlrun.setting", setting_dirname, replace=True)
OmegaConf.register_new_resolver("rlrun.seed_dir", seed_dirname, replace=True)
OmegaConf.register_new_resolver("rlrun.run_name", run_dirname, replace=True)


def train_seeds(cfg: DictConfig, run_dir: Path) -> float:
    """Train with `seeds` seeds (seed, seed+1, ...) one after another; return their mean final
    eval return. With one seed the run is `run_dir` itself, otherwise `run_dir/seed=<n>` each
    (in a sweep, run_dir is `<setting>/seeds=<first>-<last>`), with its own `.hydra/config.yaml`
    so `rlrun-compare` groups them like any other runs."""
    from rlrun import runner  # torch only once the command line has been parsed

    rlrun.imports_done()  # the end of the `rlrun` command's start-up (rlrun.pause_gc)
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
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # but a full disk fails every job after it: the sweep stops, in one line (rlrun.cli)
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


def check_slurm_cluster(config: DictConfig) -> None:
    """With the SLURM launcher and no SLURM on this machine: one line and exit code 2, before the
    sweep folder exists (submitit would fail later with a traceback and leave it empty)."""
    if OmegaConf.select(config, "hydra.launcher._target_") != SLURM_LAUNCHER:
        return
    if all(shutil.which(command) for command in SLURM_COMMANDS):
        return
    print(
        "rlrun: error: launcher=slurm found no SLURM cluster (no srun or sbatch on PATH); "
        "launcher=slurm_local runs the same jobs on this machine",
        file=sys.stderr,
    )
    sys.exit(2)


def finished_runs(sweep_dir: Path) -> list[str]:
    """One line per finished run beneath `sweep_dir`: its folder and final eval return (mean ± std)."""
    found = []
    for path in sorted(sweep_dir.rglob(SUMMARY_FILE)):
        summary = json.loads(path.read_text())
        found.append((str(path.parent.relative_to(sweep_dir)), summary["eval_return_mean"], summary["eval_return_std"]))
    width = max((len(name) for name, _, _ in found), default=0)
    return [f"  {name:<{width}}  final eval return {mean:.2f} ± {std:.2f}" for name, mean, std in found]


class SweepHooks(Callback):
    """No SLURM launcher without a cluster; folder names by what the sweep varies; at the end, each
    finished run's result and which jobs failed (exit code 1 if any)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse launcher=slurm where there is no cluster. Leave the keys given one value for every
        job out of the setting folders' names (`algo=reinforce/seed=0`, not
        `algo=reinforce,total_timesteps=20000/seed=0`). Each job's config is composed again from
        the sweep's Hydra overrides, so the exclusion goes there."""
        check_slurm_cluster(config)
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
        finished = [f"sweep finished in {sweep_dir}; compare its runs with: rlrun-compare {sweep_dir}"]
        log.info("\n".join(finished + finished_runs(sweep_dir)))
        failed = [json.loads(p.read_text()) for p in sorted(sweep_dir.rglob(FAILED_FILE))]
        if not failed:
            return
        lines = [f"rlrun: {len(failed)} job(s) of the sweep in {sweep_dir} failed; the others finished:"]
        for record in failed:
            lines.append(f"  {' '.join(record['overrides'])}")
            lines.append(f"    {record['error']}")
            lines.append(f"    log: {record['log']}")
        print("\n".join(lines), file=sys.stderr)
        sys.exit(1)
