"""What a run says on the console besides its progress: its first line and its last.

The first line comes as soon as the config is composed and checked, before torch is imported (about
a second after the command, where building takes several), so it cannot ask the algorithm for the
unit of its x-axis: `x_axis` tells it from the config, and a test checks it against every class.
The last line uses the run's own unit, and says why the run stopped where it did when that is not
its budget.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Units of the x-axis as the console names them.
UNIT_NAMES = {"env_steps": "env steps", "gradient_steps": "gradient steps", "iterations": "iterations"}
# Algorithms whose x-axis is not env steps (rlrun.algos.base.Algorithm.x_axis).
ITERATIONS = ("value_iteration", "policy_iteration")  # dynamic programming never steps the env
GRADIENT_STEPS = ("bc",)  # learns from a dataset; fqi too when given one (algo.dataset)


def x_axis(cfg: DictConfig) -> str:
    """The unit the run's budget counts, as its algorithm will (`Algorithm.x_axis`)."""
    name = cfg.algo.name
    if name in ITERATIONS:
        return "iterations"
    if name in GRADIENT_STEPS or (name == "fqi" and cfg.algo.get("dataset") is not None):
        return "gradient_steps"
    return "env_steps"


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is beneath it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def first_line(cfg: DictConfig, run_dir: Path, presets: dict[str, Any]) -> str:
    """`training ppo on Pendulum-v1 (experiment=ppo_pendulum), 200000 env steps, seed 0 -> outputs/...`:
    what the run builds, for how long and where, before anything slow happens. `presets`: the
    chosen options of config groups (Hydra's runtime choices); experiment and task are named."""
    env = OmegaConf.select(cfg, "env.id", default=None, throw_on_missing=False) or cfg.env.name
    chosen = [f"{group}={presets[group]}" for group in ("experiment", "task") if presets.get(group)]
    seeds = f"seed {cfg.seed}" if cfg.seeds == 1 else f"seeds {cfg.seed}-{cfg.seed + cfg.seeds - 1}"
    verb = "continuing" if cfg.get("resume") is not None else "training"
    budget = f"{cfg.total_timesteps} {UNIT_NAMES[x_axis(cfg)]}"
    if cfg.algo.name in ITERATIONS:  # dynamic programming runs until its box converges
        budget = f"until converged, at most {min(cfg.total_timesteps, cfg.algo.max_iterations)} iterations"
    what = f"{cfg.algo.name} on {env}{''.join(f' ({c})' for c in chosen)}"
    return f"{verb} {what}, {budget}, {seeds} -> {shown_path(run_dir)}"


def stopped_at(step: int, total: int, unit: str, reason: str | None) -> str:
    """The x-axis units the run took, and why that is not its budget when it is not: `2477 env steps
    (477 past total_timesteps=2000: the last iteration was not cut short)`, `571 iterations (value_iteration
    finished before total_timesteps=100000)`."""
    taken = f"{step} {UNIT_NAMES[unit]}"
    if reason is not None and step < total:
        return f"{taken} ({reason} before total_timesteps={total})"
    if step > total:
        return f"{taken} ({step - total} past total_timesteps={total}: the last iteration was not cut short)"
    return taken
