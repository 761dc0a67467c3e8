"""`rlrun-eval`: load a trained run (or one checkpoint) and measure its deterministic policy.

    rlrun-eval RUN_DIR_OR_CHECKPOINT [episodes=20] [which=final|best] [video=true] [seed=N] [device=cpu]

prints the mean ± std return over `episodes` episodes, started from the same initial states as
the run's own evaluations (so `episodes=<eval.episodes>` reproduces its final eval return). A run
directory is evaluated from its newest checkpoint (`which=final`, the default) or from the
networks of its best evaluation, `best_model.pt` (`which=best`); a checkpoint file as it is. With
`video=true` the first episode is also recorded to `<run dir>/videos/` as mp4 (gymnasium's
RecordVideo) and logged to the run's TensorBoard as `eval/video`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml

from rlrun.config import MAX_SEED, MAX_SIDE_BY_SIDE, ConfigError, Rule, choice, flag, integer, optional

RULES: dict[str, Rule] = {
    "episodes": integer(1, MAX_SIDE_BY_SIDE),  # run side by side, like a run's eval.episodes
    "video": flag(),
    "seed": optional(integer(0, MAX_SEED)),
    "device": choice("auto", "cpu", "cuda"),
    "which": choice("final", "best"),
}
DEFAULTS = {"episodes": 20, "video": False, "seed": None, "device": "cpu", "which": "final"}


def parse_args(argv: list[str]) -> tuple[str, dict]:
    """`PATH key=value ...`; values are read as YAML scalars, never run as code."""
    path, options = None, dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or (key not in RULES and Path(arg).exists()):  # run folders' names hold `=`
            if path is not None:
                raise ConfigError("path", arg, f"a single run directory or checkpoint (already given: {path})")
            path = arg
            continue
        if key not in RULES:
            raise ConfigError(key, value, "a key among " + ", ".join(RULES))
        options[key] = yaml.safe_load(value)
        RULES[key](key, options[key])
    if path is None:
        raise ConfigError(
            "path", None, "a run directory or checkpoint file: rlrun-eval RUN_DIR [episodes=20] [video=true]"
        )
    return path, options


def run_dir_of(checkpoint_file: Path) -> Path:
    return checkpoint_file.parent.parent if checkpoint_file.parent.name == "checkpoints" else checkpoint_file.parent


def evaluate(path: str, episodes: int, video: bool, seed: int | None, device: str, which: str) -> np.ndarray:
    from torch.utils.tensorboard import SummaryWriter

    from rlrun import checkpoint, evaluation, memory
    from rlrun.build import task_config
    from rlrun.events import events_dir

    if video:
        evaluation.require_video_support("video")
    act, cfg, step, found = checkpoint.load_for_eval(path, which, device)
    memory.check(memory.episodes("episodes", episodes, cfg.env, memory.env_spaces(cfg.env)))
    seed = cfg.seed if seed is None else seed
    result = evaluation.Evaluator(cfg.env, episodes, seed, task_config(cfg))(act)
    returns = result.returns
    others = "".join(f" | {tag} {value:.4g}" for tag, value in result.metrics.items() if tag != "eval/episodic_return")
    print(f"eval return {returns.mean():.2f} ± {returns.std():.2f} over {episodes} episodes{others} | step {step} | {found}")
    if video:
        run_dir = run_dir_of(found)
        name = f"rlrun-eval-step_{step:012d}"
        folder = run_dir / evaluation.VIDEO_DIR
        episode_return, frames, fps = evaluation.record_episode(
            cfg.env, act, evaluation.eval_seed(seed), folder, name, task_config(cfg)
        )
        with SummaryWriter(str(events_dir(run_dir))) as writer:
            writer.add_video(evaluation.VIDEO_TAG, evaluation.tensorboard_clip(frames), step, fps=fps)
        print(f"video of one episode (return {episode_return:.2f}): {folder / name}-episode-0.mp4")
    return returns


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    try:
        path, options = parse_args(argv)
        evaluate(path, **options)
    except ConfigError as err:
        print(f"rlrun-eval: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
