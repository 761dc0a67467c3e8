"""One training run: build, then repeat the algorithm's box until the budget.

Everything every algorithm needs lives here once: the step counter and budget in the algorithm's
x-axis unit, evaluation, logging, checkpoints, the final and best model files, and the summary.
The algorithm's own file holds only its algorithm.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlrun import checkpoint, evaluation
from rlrun.algos.base import Algorithm
from rlrun.build import build, task_config
from rlrun.config import ConfigError
from rlrun.console import UNIT_NAMES, stopped_at
from rlrun.events import events_dir
from rlrun.logger import EVAL_TAG, Logger
from rlrun.state import set_global_rng_state
from rlrun.stops import Diverged, Interrupted

log = logging.getLogger("rlrun")

SUMMARY_FILE = "summary.json"  # written last: its presence marks a finished run

# Points of the training curves when log.every is null: per 1000 steps, or every iteration of an
# algorithm whose x-axis counts iterations (few and expensive).
DEFAULT_LOG_EVERY = {"env_steps": 1000, "gradient_steps": 1000, "iterations": 1}


@dataclass
class Progress:
    """The runner's own state, saved in every checkpoint beside the algorithm's."""

    step: int = 0  # x-axis units taken: env steps, gradient steps or iterations (the algorithm's x_axis)
    iterations: int = 0  # calls of `iterate()`
    train_seconds: float = 0.0  # time inside `iterate()`, the denominator of charts/SPS
    evaluated_at: int = -1  # x of the latest evaluation
    eval_returns: list[float] = field(default_factory=list)  # its episode returns
    eval_metrics: dict[str, float] = field(default_factory=dict)  # and every eval/ metric it logged
    best_return: float | None = None  # the best evaluation's mean return so far
    best_step: int = -1  # and its x
    video_at: int = -1  # x of the latest eval video


STOP_GRACE_S = 5.0  # how long a stop request waits for the current iteration to end


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM (a cluster's pre-emption) ask the loop to stop after the current
    iteration, whose state is consistent, and save it; a second signal acts as it normally would.

    An iteration can take minutes (algo.N=1000000), and a cluster kills a job soon after its
    SIGTERM. So if the iteration has not ended STOP_GRACE_S seconds after the request, the process
    exits at once with code 128 + signal, saving nothing: the newest checkpoint stays the last good
    one, and `gave_up(signum)` is the one line it prints."""

    def __init__(self, gave_up: Callable[[int], str]):
        self.gave_up = gave_up

    def __enter__(self):
        self.signum: int | None = None
        self.previous = {}
        self.deadline: threading.Timer | None = None
        if threading.current_thread() is threading.main_thread():  # Python handles signals only there
            self.previous = {s: signal.signal(s, self.request) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def request(self, signum: int, frame) -> None:
        self.signum = signum
        self.restore()
        self.deadline = threading.Timer(STOP_GRACE_S, self.give_up, (signum,))
        self.deadline.daemon = True
        self.deadline.start()
        log.warning(
            "%s: saving a checkpoint after this iteration (again, or %g s without it ending, to stop without saving)",
            signal.strsignal(signum),
            STOP_GRACE_S,
        )

    def give_up(self, signum: int) -> None:
        """On the timer's thread: the main thread is still inside the iteration, so end the process."""
        print(self.gave_up(signum), file=sys.stderr, flush=True)
        os._exit(128 + signum)

    def iteration_ended(self) -> None:
        """The loop is out of its iteration: what follows (the save) must not be cut off."""
        if self.deadline is not None:
            self.deadline.cancel()

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self.previous = {}

    def __exit__(self, *exc) -> None:
        self.iteration_ended()
        self.restore()


def crossed(before: int, after: int, every: int) -> bool:
    """Whether going from `before` to `after` steps passed a multiple of `every` (0: never).
    Derived from the step alone, so a resumed run keeps the schedule and may change `every`."""
    return every > 0 and after // every > before // every


class Metrics:
    """The training metrics of the iterations since the last logged point, logged as their means."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.images: dict[str, np.ndarray] = {}

    def add(self, metrics: dict) -> None:
        for tag, value in metrics.items():
            if isinstance(value, np.ndarray):
                self.images[tag] = value
            else:
                self.sums[tag] += value
                self.counts[tag] += 1

    def take(self) -> dict:
        """The means (and the latest images), emptying the accumulator."""
        out = {tag: total / self.counts[tag] for tag, total in self.sums.items()}
        out.update(self.images)
        self.__init__()
        return out


def check_finite(step: int, metrics: dict, algo: Algorithm, last_good: Path | None) -> None:
    bad = [
        f"{tag}={value}"
        for tag, value in metrics.items()
        if tag.startswith("losses/") and not isinstance(value, np.ndarray) and not math.isfinite(value)
    ]
    for name, net in algo.networks().items():
        if not all(torch.isfinite(p).all() for p in net.parameters()):  # a module may have none (tables)
            bad.append(f"parameters of {name}")
    if bad:
        raise diverged(step, f"{', '.join(bad)} not finite", last_good)


def diverged(step: int, what: str, last_good: Path | None) -> Diverged:
    kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was saved before it"
    return Diverged(f"training diverged at step {step}: {what}; stopped without saving ({kept})")


def iterate(algo: Algorithm, step: int, last_good: Path | None) -> tuple[int, dict]:
    """One call of the algorithm's box. An optimizer step whose size overflows float32 (Adam with
    lr=1e38) fails inside torch before any NaN shows: that too is divergence, not a crash."""
    try:
        return algo.iterate(step)
    except RuntimeError as err:
        if "overflow" not in str(err):
            raise
        raise diverged(step, f"an update overflowed float32 ({str(err).strip()})", last_good) from None


def after_earlier_event_files(tb_dir: Path) -> None:
    """Wait, if need be, into a second later than the newest event file's. TensorBoard reads a run's
    files in name order, whose first field is the second they were opened in; the purge of what an
    earlier attempt logged after the checkpoint works only if the new file comes after its file."""
    opened = [int(p.name.split(".")[3]) for p in tb_dir.glob("events.out.tfevents.*")]
    while opened and time.time() < max(opened) + 1:
        time.sleep(0.05)


def resume(cfg: DictConfig, run_dir: Path, algo: Algorithm) -> Progress:
    """Load the newest checkpoint in `run_dir` into `algo` and the global generators and return
    the runner's state from it; a fresh Progress when the folder holds none (a new run)."""
    if cfg.resume is not None:
        wanted = Path(cfg.resume).resolve()
        if wanted != run_dir.resolve() and wanted not in run_dir.resolve().parents:  # parents: seed=<n>/ of seeds>1
            raise ConfigError(
                "resume", cfg.resume, f"the folder this run writes to ({run_dir}); not with -m or hydra.run.dir"
            )
    path = checkpoint.latest_checkpoint(run_dir)
    if path is None:
        if cfg.resume is not None:
            log.warning("%s holds no checkpoint yet: training it again from step 0 with its own config", run_dir)
        return Progress()
    # on the CPU: numpy buffers and generator states want it there
    state = checkpoint.load_rlrun_file(path, "a checkpoint", "algo", "rng", "runner")
    checkpoint.check_same_run(state["config"], cfg, run_dir)
    try:
        algo.load_state_dict(state["algo"])
        set_global_rng_state(state["rng"])
        progress = Progress(**state["runner"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise ConfigError("checkpoint", str(path), f"a checkpoint this version of rlrun wrote ({err})") from None
    log.info("resuming from %s", path)
    return progress


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Train, evaluate and save; return the final mean evaluation return.

    Continues from the newest checkpoint in `run_dir` when there is one. Raises Diverged on a
    non-finite loss or parameter and Interrupted after saving on SIGINT/SIGTERM.
    """
    algo = build(cfg, load_policy=lambda run, which: checkpoint.load_policy(run, which, cfg.device))
    if cfg.eval.video:
        evaluation.require_video_support("eval.video")
    progress = resume(cfg, run_dir, algo)
    unit = algo.x_axis
    log_every = cfg.log.every if cfg.log.every is not None else DEFAULT_LOG_EVERY[unit]
    config = OmegaConf.to_container(cfg, resolve=True)
    task_cfg = task_config(cfg)
    evaluator = evaluation.Evaluator(cfg.env, cfg.eval.episodes, cfg.seed, task_cfg)
    after_earlier_event_files(events_dir(run_dir))
    logger = Logger(run_dir, cfg, start_step=progress.step, unit=UNIT_NAMES[unit])
    last_good = checkpoint.latest_checkpoint(run_dir)
    pending = Metrics()

    def log_point() -> None:
        """The means since the last point, checked for divergence, as one point of the curves."""
        metrics = pending.take()
        check_finite(progress.step, metrics, algo, last_good)
        if metrics:
            metrics["charts/SPS"] = progress.step / max(progress.train_seconds, 1e-9)
            logger.log(progress.step, metrics)

    def run_eval() -> None:
        result = evaluator(algo.act)
        progress.eval_returns, progress.eval_metrics = result.returns.tolist(), result.metrics
        progress.evaluated_at = progress.step
        mean = float(np.mean(progress.eval_returns))
        logger.log(progress.step, result.metrics)
        if progress.best_return is None or mean > progress.best_return:
            progress.best_return, progress.best_step = mean, progress.step
            checkpoint.save_model(run_dir / checkpoint.BEST_MODEL_FILE, algo.networks(), config, progress.step)

    def record_video() -> None:
        name = f"step_{progress.step:012d}"
        _, frames, fps = evaluation.record_episode(
            cfg.env, algo.act, evaluation.eval_seed(cfg.seed), run_dir / evaluation.VIDEO_DIR, name, task_cfg
        )
        logger.video(evaluation.VIDEO_TAG, progress.step, evaluation.tensorboard_clip(frames), fps)
        progress.video_at = progress.step

    # what the loop reads every iteration, read from the config once (an OmegaConf lookup costs ~5 us, a
    # noticeable share of an iteration of one env step)
    total, stop_at, checkpoint_every = cfg.total_timesteps, cfg.eval.stop_at, cfg.checkpoint.every
    eval_every, video, video_every = cfg.eval.every, cfg.eval.video, cfg.eval.video_every

    def target_reached() -> bool:
        return stop_at is not None and bool(progress.eval_returns) and np.mean(progress.eval_returns) >= stop_at

    def done() -> bool:
        return progress.step >= total or algo.finished or target_reached()

    def save() -> Path:
        log_point()  # a checkpoint holds no half-averaged point, and no diverged parameters
        logger.flush()  # every point up to this checkpoint is on disk before the checkpoint is
        state = {"algo": algo.state_dict(), "runner": asdict(progress), "config": config}
        return checkpoint.save_checkpoint(run_dir, progress.step, state, cfg.checkpoint.keep)

    def gave_up(signum: int) -> str:
        kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was saved yet"
        return (
            f"rlrun: stopped by {signal.strsignal(signum)} at step {progress.step}: the iteration did not end within "
            f"{STOP_GRACE_S:g} s, so nothing was saved ({kept}); continue with: rlrun resume={run_dir}"
        )

    with StopOnSignal(gave_up) as stop:
        try:
            while not done() and stop.signum is None:
                before = progress.step
                start = time.perf_counter()
                steps, metrics = iterate(algo, progress.step, last_good)
                progress.train_seconds += time.perf_counter() - start
                progress.step += steps
                progress.iterations += 1
                pending.add(metrics)
                if crossed(before, progress.step, log_every):
                    log_point()
                if crossed(before, progress.step, eval_every):
                    run_eval()
                if video and crossed(before, progress.step, video_every):
                    record_video()
                if crossed(before, progress.step, checkpoint_every):
                    last_good = save()
                logger.progress(progress.step)
            stop.iteration_ended()
            if not done():
                path = save()
                raise Interrupted(
                    stop.signum, f"stopped by {signal.strsignal(stop.signum)} at step {progress.step}; saved {path}"
                )
            if progress.evaluated_at != progress.step:
                run_eval()
            if cfg.eval.video and progress.video_at != progress.step:
                record_video()
            save()
        finally:
            logger.close()
            evaluator.close()
    checkpoint.save_model(run_dir / checkpoint.MODEL_FILE, algo.networks(), config, progress.step)
    write_artefacts(run_dir, algo.artefacts())
    reason = None  # why the run stopped short of its budget, if it did
    if algo.finished or target_reached():
        reason = f"{cfg.algo.name} finished" if algo.finished else f"eval.stop_at={cfg.eval.stop_at} reached"
    return write_summary(run_dir, progress, unit, cfg.total_timesteps, reason)


def write_artefacts(run_dir: Path, artefacts: dict) -> None:
    """Arrays as .npy, [H, W, 3] uint8 pictures as .png."""
    for name, value in artefacts.items():
        if name.endswith(".png"):
            import matplotlib.image  # only runs with pictures (dynamic programming) pay its 0.4 s import

            matplotlib.image.imsave(run_dir / name, value)
        else:
            np.save(run_dir / name, value)


def write_summary(run_dir: Path, progress: Progress, unit: str, total: int, reason: str | None = None) -> float:
    """summary.json, and the run's last console line: the final eval (and the best), in the run's
    own x-axis unit, with why it stopped short of its budget (`reason`) or by how much it went past."""
    returns = np.array(progress.eval_returns)
    summary = {
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        **{tag.removeprefix("eval/"): value for tag, value in progress.eval_metrics.items() if tag != EVAL_TAG},
        "best_eval_return_mean": progress.best_return,
        "best_step": progress.best_step,
        "x_axis": unit,
        "steps": progress.step,
        "env_steps": progress.step if unit == "env_steps" else 0,
        "train_seconds": progress.train_seconds,
        "run_dir": str(run_dir),
    }
    # whole or absent: a summary cut short by a full disk would mark an unfinished run finished
    checkpoint.atomic_write(run_dir / SUMMARY_FILE, lambda f: f.write(json.dumps(summary, indent=2).encode()))
    log.info(
        "final eval return %.2f ± %.2f (best %.2f at %d) | %s | %.1f s training | %s",
        summary["eval_return_mean"],
        summary["eval_return_std"],
        progress.best_return,
        progress.best_step,
        stopped_at(progress.step, total, unit, reason),
        progress.train_seconds,
        run_dir,
    )
    return summary["eval_return_mean"]
