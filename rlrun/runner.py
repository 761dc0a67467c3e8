"""One training run: validate, seed, build, then repeat the algorithm's box until the budget.

Everything every algorithm needs lives here once: the budget, evaluation, logging, checkpoints,
the model file and the summary. The algorithm's own file holds only its algorithm.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from rlrun import algos, checkpoint, config, envs
from rlrun.config import ConfigError
from rlrun.data import sample_trajectories
from rlrun.logger import EVAL_TAG, Logger

log = logging.getLogger("rlrun")

SUMMARY_FILE = "summary.json"  # written last: its presence marks a finished run


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "auto or cpu (torch sees no CUDA device here)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Evaluator:
    """`episodes` episodes of the deterministic policy, side by side on envs of their own.

    Every evaluation starts from the same seeded initial states, so points of one curve differ
    only by the policy.
    """

    def __init__(self, env_cfg: DictConfig, episodes: int, seed: int):
        self.env = envs.make_vec_env(env_cfg, episodes)
        self.seed = seed + 10_000

    def __call__(self, act) -> np.ndarray:
        return sample_trajectories(self.env, act, self.seed).episode_returns


def build(cfg: DictConfig, run_dir: Path | None = None):
    """Validate the config and build the algorithm; raises ConfigError on any bad value."""
    config.check(cfg, config.RULES)
    algo_cls = algos.get(cfg.algo.name)
    config.check(cfg, algo_cls.RULES, prefix="algo.")
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    ctx = algos.Context(env_cfg=cfg.env, seed=cfg.seed, device=pick_device(cfg.device), run_dir=run_dir)
    return algo_cls(cfg.algo, ctx)


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Train, evaluate and save; return the final mean evaluation return."""
    algo = build(cfg, run_dir)
    evaluate = Evaluator(cfg.env, cfg.eval.episodes, cfg.seed)
    logger = Logger(run_dir, cfg)
    step, train_seconds = 0, 0.0
    next_eval = cfg.eval.every or cfg.total_timesteps
    next_checkpoint = cfg.checkpoint.every or cfg.total_timesteps
    returns, evaluated_at = None, None
    try:
        while step < cfg.total_timesteps and not getattr(algo, "finished", False):
            start = time.perf_counter()
            steps, metrics = algo.iterate()
            train_seconds += time.perf_counter() - start
            step += steps
            metrics["charts/SPS"] = step / max(train_seconds, 1e-9)
            logger.log(step, metrics)
            if step >= next_eval:
                returns, evaluated_at = evaluate(algo.act), step
                logger.log(step, {EVAL_TAG: float(returns.mean())})
                next_eval += cfg.eval.every or cfg.total_timesteps
            if step >= next_checkpoint:
                checkpoint.save_checkpoint(run_dir, step, {"algo": algo.state_dict()}, cfg.checkpoint.keep)
                next_checkpoint += cfg.checkpoint.every or cfg.total_timesteps
            logger.progress(step)
        if evaluated_at != step:
            returns = evaluate(algo.act)
            logger.log(step, {EVAL_TAG: float(returns.mean())})
    finally:
        logger.close()
    checkpoint.save_checkpoint(run_dir, step, {"algo": algo.state_dict()}, cfg.checkpoint.keep)
    checkpoint.save_model(run_dir, algo.networks())
    summary = {
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "env_steps": step,
        "train_seconds": train_seconds,
        "run_dir": str(run_dir),
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    log.info(
        "final eval return %.2f ± %.2f | %d env steps | %.1f s training | %s",
        summary["eval_return_mean"], summary["eval_return_std"], step, train_seconds, run_dir,
    )
    return summary["eval_return_mean"]
