"""One training run: validate, seed, build, then repeat the algorithm's box until the budget.

Everything every algorithm needs lives here once: the budget, evaluation, logging, checkpoints,
the model file and the summary. The algorithm's own file holds only its algorithm.
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlrun import algos, checkpoint, config, envs, evaluate
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


def eval_seed(seed: int) -> int:
    """Seed of the first evaluation episode (episode i starts from seed + i), apart from training's."""
    return seed + 10_000


class Evaluator:
    """`episodes` episodes of the deterministic policy, side by side on envs of their own.

    Every evaluation starts from the same seeded initial states, so points of one curve differ
    only by the policy.
    """

    def __init__(self, env_cfg: DictConfig, episodes: int, seed: int):
        self.env = envs.make_vec_env(env_cfg, episodes)
        self.seed = eval_seed(seed)

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


@dataclass
class Progress:
    """The runner's own state, saved in every checkpoint beside the algorithm's."""

    step: int = 0  # env steps taken
    iterations: int = 0  # calls of `iterate()`
    train_seconds: float = 0.0  # time inside `iterate()`, the denominator of charts/SPS
    evaluated_at: int = -1  # x of the latest evaluation
    eval_returns: list[float] = field(default_factory=list)  # its episode returns
    video_at: int = -1  # x of the latest eval video


class Diverged(Exception):
    """A NaN or infinite loss or parameter: the run stops and saves nothing more."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM: the run saved a checkpoint and stopped before its budget. Like
    KeyboardInterrupt, not an Exception, so a sweep stops rather than moving to its next job."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM (a cluster's pre-emption) ask the loop to stop after the current
    iteration, whose state is consistent, and save it; a second signal acts as it normally would."""

    def __enter__(self):
        self.signum: int | None = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # Python handles signals only there
            self.previous = {s: signal.signal(s, self.request) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def request(self, signum: int, frame) -> None:
        self.signum = signum
        self.__exit__()
        log.warning(
            "%s: saving a checkpoint after this iteration (again to stop without saving)", signal.strsignal(signum)
        )

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self.previous = {}


def crossed(before: int, after: int, every: int) -> bool:
    """Whether going from `before` to `after` env steps passed a multiple of `every` (0: never).
    Derived from the step alone, so a resumed run keeps the schedule and may change `every`."""
    return every > 0 and after // every > before // every


def check_finite(step: int, metrics: dict, algo, last_good: Path | None) -> None:
    bad = [f"{tag}={value}" for tag, value in metrics.items() if tag.startswith("losses/") and not math.isfinite(value)]
    for name, net in algo.networks().items():
        if not all(torch.isfinite(p).all() for p in net.parameters()):  # a module may have none (tables)
            bad.append(f"parameters of {name}")
    if bad:
        kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was saved before it"
        raise Diverged(
            f"training diverged at step {step}: {', '.join(bad)} not finite; stopped without saving ({kept})"
        )


def after_earlier_event_files(tb_dir: Path) -> None:
    """Wait, if need be, into a second later than the newest event file's. TensorBoard reads a run's
    files in name order, whose first field is the second they were opened in; the purge of what an
    earlier attempt logged after the checkpoint works only if the new file comes after its file."""
    opened = [int(p.name.split(".")[3]) for p in tb_dir.glob("events.out.tfevents.*")]
    while opened and time.time() < max(opened) + 1:
        time.sleep(0.05)


def resume(cfg: DictConfig, run_dir: Path, algo) -> Progress:
    """Load the newest checkpoint in `run_dir` into `algo` and the global generators and return
    the runner's state from it; a fresh Progress when the folder holds none (a new run)."""
    if cfg.resume is not None:
        wanted = Path(cfg.resume).resolve()
        if wanted != run_dir.resolve() and wanted not in run_dir.resolve().parents:  # parents: seed=<n>/ of seeds>1
            raise ConfigError(
                "resume", cfg.resume, f"the folder this run writes to ({run_dir}); not with -m or hydra.run.dir"
            )
        if not any(wanted.rglob("step_*.pt")):
            raise ConfigError("resume", cfg.resume, f"a run directory holding {checkpoint.CHECKPOINT_DIR}/step_*.pt")
    path = checkpoint.latest_checkpoint(run_dir)
    if path is None:
        return Progress()
    state = checkpoint.safe_load(path)  # on the CPU: numpy buffers and generator states want it there
    checkpoint.check_same_run(state["config"], cfg, run_dir)
    algo.load_state_dict(state["algo"])
    checkpoint.set_global_rng_state(state["rng"])
    log.info("resuming from %s", path)
    return Progress(**state["runner"])


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Train, evaluate and save; return the final mean evaluation return.

    Continues from the newest checkpoint in `run_dir` when there is one. Raises Diverged on a
    non-finite loss or parameter and Interrupted after saving on SIGINT/SIGTERM.
    """
    try:
        algo = build(cfg, run_dir)
        if cfg.eval.video:
            evaluate.require_video_support("eval.video")
        progress = resume(cfg, run_dir, algo)
    except ConfigError:
        checkpoint.restore_config(run_dir)  # an existing run's config, which Hydra has just overwritten
        raise
    # An algorithm that takes no env steps (dynamic programming on a known model) is plotted per iteration.
    per_iteration = getattr(algo, "x_axis", "env_steps") == "iterations"

    def x() -> int:
        return progress.iterations if per_iteration else progress.step

    evaluator = Evaluator(cfg.env, cfg.eval.episodes, cfg.seed)
    after_earlier_event_files(run_dir / "tb")
    logger = Logger(run_dir, cfg, start_step=x())
    last_good = checkpoint.latest_checkpoint(run_dir)

    def run_eval() -> None:
        progress.eval_returns, progress.evaluated_at = evaluator(algo.act).tolist(), x()
        logger.log(x(), {EVAL_TAG: float(np.mean(progress.eval_returns))})

    def record_video() -> None:
        name = f"step_{x():012d}"
        _, frames, fps = evaluate.record_episode(
            cfg.env, algo.act, eval_seed(cfg.seed), run_dir / evaluate.VIDEO_DIR, name
        )
        logger.video(evaluate.VIDEO_TAG, x(), evaluate.tensorboard_clip(frames), fps)
        progress.video_at = x()

    def target_reached() -> bool:
        stop_at = cfg.eval.stop_at
        return stop_at is not None and bool(progress.eval_returns) and np.mean(progress.eval_returns) >= stop_at

    def done() -> bool:
        return progress.step >= cfg.total_timesteps or getattr(algo, "finished", False) or target_reached()

    def save() -> Path:
        logger.flush()  # every point up to this checkpoint is on disk before the checkpoint is
        state = {
            "algo": algo.state_dict(),
            "runner": asdict(progress),
            "config": OmegaConf.to_container(cfg, resolve=True),
        }
        return checkpoint.save_checkpoint(run_dir, x(), state, cfg.checkpoint.keep)

    with StopOnSignal() as stop:
        try:
            while not done() and stop.signum is None:
                before = progress.step
                start = time.perf_counter()
                steps, metrics = algo.iterate()
                progress.train_seconds += time.perf_counter() - start
                progress.step += steps
                progress.iterations += 1
                check_finite(x(), metrics, algo, last_good)
                metrics["charts/SPS"] = progress.step / max(progress.train_seconds, 1e-9)
                logger.log(x(), metrics)
                if crossed(before, progress.step, cfg.eval.every):
                    run_eval()
                if cfg.eval.video and crossed(before, progress.step, cfg.eval.video_every):
                    record_video()
                if crossed(before, progress.step, cfg.checkpoint.every):
                    last_good = save()
                logger.progress(progress.step)
            if not done():
                path = save()
                raise Interrupted(
                    stop.signum, f"stopped by {signal.strsignal(stop.signum)} at step {x()}; saved {path}"
                )
            if progress.evaluated_at != x():
                run_eval()
            if cfg.eval.video and progress.video_at != x():
                record_video()
            save()
        finally:
            logger.close()
    checkpoint.save_model(run_dir, algo.networks())
    returns = np.array(progress.eval_returns)
    summary = {
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "env_steps": progress.step,
        "train_seconds": progress.train_seconds,
        "run_dir": str(run_dir),
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    log.info(
        "final eval return %.2f ± %.2f | %d env steps | %.1f s training | %s",
        summary["eval_return_mean"],
        summary["eval_return_std"],
        progress.step,
        progress.train_seconds,
        run_dir,
    )
    return summary["eval_return_mean"]
