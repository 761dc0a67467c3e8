"""Evaluation of the deterministic policy: returns over fixed initial states (and fixed tasks), and
recorded episodes.

Every evaluation of a run starts from the same seeded initial states, and with a task distribution
runs the same train and test tasks, so the points of one curve differ only by the policy.
`rlrun-eval` (rlrun.evaluate) and the runner both measure through here.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

from rlrun import envs, tasks
from rlrun.config import ConfigError
from rlrun.data import sample_trajectories
from rlrun.logger import EVAL_TAG

SUCCESS_TAG = "eval/success_rate"
VIDEO_TAG = "eval/video"
VIDEO_DIR = "videos"
TENSORBOARD_SIZE = 256  # longest side, in pixels, of the video in TensorBoard (the mp4 keeps full size)


def eval_seed(seed: int) -> int:
    """Seed of the first evaluation episode (episode i starts from seed + i), apart from training's."""
    return seed + 10_000


@dataclass
class Evaluation:
    """One evaluation: the episode returns (the run's result) and every eval/ metric to log by tag."""

    returns: np.ndarray
    metrics: dict[str, float]


class Evaluator:
    """The deterministic policy's episodes, side by side on envs of their own, built once so every
    evaluation of a run meets the same initial states and the same tasks.

    Without a task config: `episodes` episodes of the env. With one: the fixed train and test tasks
    of `tasks.eval_tasks`, each for ceil(episodes / tasks in its split) episodes, so every split runs
    at least `episodes` episodes and weighs its tasks equally. The train tasks' returns are the run's
    result (`Evaluation.returns`, `eval/episodic_return`); each split's mean is logged as
    `eval/train_tasks/episodic_return` and `eval/test_tasks/episodic_return`, and each named task's
    as `eval/<name>/episodic_return`. `eval/success_rate`: the share of the result's episodes that
    ended in success, where the env reports it.
    """

    def __init__(self, env_cfg: DictConfig, episodes: int, seed: int, task_cfg: DictConfig | None = None):
        self.seed = eval_seed(seed)
        self.result = np.arange(episodes)  # the indices of the episodes whose returns are the result
        self.groups: dict[str, np.ndarray] = {}  # a tag's middle part -> the indices of its episodes
        if task_cfg is None:  # gymnasium's envs whatever env.backend trains on: the same initial states for both
            self.env = envs.make_vec_env(env_cfg, episodes, backend_name="gymnasium")
            return
        fixed = tasks.eval_tasks(task_cfg)
        every_episode: list[tasks.Task] = []
        for split, split_tasks in fixed.items():
            repeats = math.ceil(episodes / len(split_tasks))
            start = len(every_episode)
            every_episode += [task for task in split_tasks for _ in range(repeats)]
            self.groups[f"{split}_tasks"] = np.arange(start, len(every_episode))
            for i, task in enumerate(split_tasks):
                if task.name is not None:
                    self.groups[task.name] = start + i * repeats + np.arange(repeats)
        self.result = self.groups["train_tasks"]
        self.env = envs.make_fixed_task_vec_env(env_cfg, task_cfg, every_episode)

    def __call__(self, act) -> Evaluation:
        trajectories = sample_trajectories(self.env, act, self.seed)
        returns = trajectories.episode_returns
        metrics = {EVAL_TAG: float(returns[self.result].mean())}
        metrics.update({f"eval/{group}/episodic_return": float(returns[i].mean()) for group, i in self.groups.items()})
        if trajectories.successes is not None:
            metrics[SUCCESS_TAG] = float(np.mean(trajectories.successes[self.result]))
        return Evaluation(returns[self.result], metrics)

    def close(self) -> None:
        self.env.close()


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


def record_episode(
    env_cfg: DictConfig, act, seed: int, folder: Path, name: str, task_cfg: DictConfig | None = None
) -> tuple[float, np.ndarray, int]:
    """One episode of `act` from the initial state `seed`, saved as `folder/<name>-episode-0.mp4`.

    With `task_cfg`, the episode is on the first fixed train task that evaluation runs.
    Returns the episode's return, its frames shrunk for TensorBoard ([T, H, W, 3] uint8) and the fps.
    """
    require_video_support("video")
    # offscreen frames need neither a window nor sound; without these pygame's init prints errors on servers
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    env = envs.make_env(env_cfg, render_mode="rgb_array")
    if task_cfg is not None:
        env = tasks.wrap_fixed(env, task_cfg, tasks.eval_tasks(task_cfg)["train"][0])
    env = KeepFrames(env)
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
