"""`rlrun-eval`: load a trained run (or one checkpoint) and measure its deterministic policy.

    rlrun-eval RUN_DIR_OR_CHECKPOINT [episodes=20] [video=true] [seed=N] [device=cpu]

prints the mean ± std return over `episodes` episodes, started from the same initial states as
the run's own evaluations (so `episodes=<eval.episodes>` reproduces its final eval return). With
`video=true` the first episode is also recorded to `<run dir>/videos/` as mp4 (gymnasium's
RecordVideo) and logged to the run's TensorBoard as `eval/video`. Also holds the recording the
runner uses for `eval.video=true`.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf

from rlrun import envs
from rlrun.config import ConfigError, Rule, choice, flag, integer, optional

VIDEO_TAG = "eval/video"
VIDEO_DIR = "videos"
TENSORBOARD_SIZE = 256  # longest side, in pixels, of the video in TensorBoard (the mp4 keeps full size)

RULES: dict[str, Rule] = {
    "episodes": integer(1),
    "video": flag(),
    "seed": optional(integer(0)),
    "device": choice("auto", "cpu", "cuda"),
}
DEFAULTS = {"episodes": 20, "video": False, "seed": None, "device": "cpu"}


class KeepFrames(gym.Wrapper):
    """Keeps every frame the wrapper above it renders, so one rendering feeds mp4 and TensorBoard."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.frames: list[np.ndarray] = []

    def render(self):
        frame = self.env.render()
        self.frames.append(frame)
        return frame


def require_video_support(key: str) -> None:
    """moviepy writes the mp4 (RecordVideo) and the TensorBoard clip (add_video needs moviepy < 2)."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise ConfigError(key, True, "false, or install the video extra first: pip install 'rlrun[video]'") from None


def record_episode(env_cfg: DictConfig, act, seed: int, folder: Path, name: str) -> tuple[float, np.ndarray, int]:
    """One episode of `act` from the initial state `seed`, saved as `folder/<name>-episode-0.mp4`.

    Returns the episode's return, its frames shrunk for TensorBoard ([T, H, W, 3] uint8) and the fps.
    """
    require_video_support("video")
    # offscreen frames need neither a window nor sound; without these pygame's init prints errors on servers
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    env = KeepFrames(envs.make_env(env_cfg, render_mode="rgb_array"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RecordVideo warns whenever the folder already exists
        try:
            recorder = gym.wrappers.RecordVideo(
                env, str(folder), episode_trigger=lambda _: True, name_prefix=name, disable_logger=True
            )
        except ValueError as err:
            raise ConfigError("video", True, f"false for an env without rgb_array rendering ({err})") from None
    obs, _ = recorder.reset(seed=seed)
    episode_return, done = 0.0, False
    while not done:
        action = act(np.asarray(obs)[None])[0]
        obs, reward, terminated, truncated, _ = recorder.step(action)
        episode_return += float(reward)
        done = terminated or truncated
    recorder.close()
    frames = np.stack(env.frames)
    stride = max(1, math.ceil(max(frames.shape[1:3]) / TENSORBOARD_SIZE))
    return episode_return, frames[:, ::stride, ::stride], recorder.frames_per_sec


def tensorboard_clip(frames: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] frames as the [1, T, 3, H, W] batch `SummaryWriter.add_video` takes."""
    return frames.transpose(0, 3, 1, 2)[None]


def parse_args(argv: list[str]) -> tuple[str, dict]:
    """`PATH key=value ...`; values are read as YAML scalars, never run as code."""
    path, options = None, dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
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


def evaluate(path: str, episodes: int, video: bool, seed: int | None, device: str) -> np.ndarray:
    from torch.utils.tensorboard import SummaryWriter

    from rlrun import checkpoint, runner

    if video:
        require_video_support("video")
    found = checkpoint.checkpoint_path(path)
    state = checkpoint.safe_load(found)
    cfg = OmegaConf.create(state["config"])
    cfg.device = device
    algo = runner.build(cfg)
    algo.load_state_dict(state["algo"])
    seed = cfg.seed if seed is None else seed
    returns = runner.Evaluator(cfg.env, episodes, seed)(algo.act)
    step = int(state["step"])
    print(f"eval return {returns.mean():.2f} ± {returns.std():.2f} over {episodes} episodes | step {step} | {found}")
    if video:
        run_dir = run_dir_of(found)
        name = f"rlrun-eval-step_{step:012d}"
        episode_return, frames, fps = record_episode(
            cfg.env, algo.act, runner.eval_seed(seed), run_dir / VIDEO_DIR, name
        )
        with SummaryWriter(str(run_dir / "tb")) as writer:
            writer.add_video(VIDEO_TAG, tensorboard_clip(frames), step, fps=fps)
        print(f"video of one episode (return {episode_return:.2f}): {run_dir / VIDEO_DIR / name}-episode-0.mp4")
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
