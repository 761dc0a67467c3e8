"""The algorithm contract, and what every algorithm is given (`Context`).

The runner (rlrun.runner) owns the repeat-until-budget loop, the step counter, evaluation,
logging and checkpoints, so each algorithm file reads as its algorithm and nothing else. What the
runner reads of an algorithm is exactly what `Algorithm` declares.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlrun import envs

XAxis = Literal["env_steps", "gradient_steps", "iterations"]


class Algorithm(abc.ABC):
    """One algorithm of the lecture; `iterate()` is one pass of its box."""

    # The unit of the run's x-axis and budget (`total_timesteps`): what `iterate` returns a count of.
    x_axis: XAxis = "env_steps"
    # True once there is nothing left to do (converged); the runner then stops before the budget.
    finished: bool = False

    @abc.abstractmethod
    def iterate(self, step: int) -> tuple[int, dict[str, float]]:
        """One pass of the box, `step` x-axis units into the run; returns (units taken, metrics by
        TensorBoard tag). Metrics are plain floats, or [H, W, 3] uint8 arrays logged as images."""

    @abc.abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic policy for a batch of observations, for evaluation."""

    @abc.abstractmethod
    def networks(self) -> dict[str, torch.nn.Module]:
        """What the model files hold."""

    @abc.abstractmethod
    def state_dict(self) -> dict:
        """Everything `iterate` needs to go on after a restart, as data `torch.load(weights_only=True)` reads."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    def artefacts(self) -> dict[str, Any]:
        """Files to write beside the model at the end of the run, `{file name: numpy array or [H, W, 3] picture}`."""
        return {}


def plain(cfg: DictConfig) -> SimpleNamespace:
    """An algorithm's config as plain attributes, interpolations resolved: reading a DictConfig key
    costs ~0.1 ms, which adds up in loops that read hyperparameters at every step."""
    return SimpleNamespace(**OmegaConf.to_container(cfg, resolve=True))


def lr_left(step: int, anneal_steps: int) -> float:
    """The share of its configured value a learning rate keeps at `step` when it decays linearly to 0
    over `anneal_steps` (an algorithm's `lr_anneal_steps`)."""
    return max(0.0, 1 - step / anneal_steps)


@dataclass
class Context:
    """What an algorithm gets from the build step: env construction, seed, device, and the env's
    (observation space, action space), already checked against what the algorithm takes.

    With a task distribution (`task_cfg`, the run's `task` config) every env built here is task-
    wrapped: training slots draw a task at every reset from the run's seed, and the observation
    space in `spaces` already holds what `task.observe` appends.
    """

    env_cfg: DictConfig
    seed: int
    device: torch.device
    spaces: tuple[gym.Space, gym.Space]
    task_cfg: DictConfig | None = None
    # (run directory, "final" | "best") -> that finished run's deterministic policy; given by the
    # runner (rlrun.checkpoint.load_policy) to algorithms that learn from another run (DAgger's expert)
    load_policy: Callable[[str, str], Callable[[np.ndarray], np.ndarray]] | None = None

    def make_vec_env(self, num_envs: int) -> gym.vector.VectorEnv:
        return envs.make_vec_env(self.env_cfg, num_envs, self.task_cfg, self.seed)

    def make_env(self, **kwargs) -> gym.Env:
        return envs.make_env(self.env_cfg, **kwargs)

    def rng(self, stream: int = 0) -> np.random.Generator:
        """An independent numpy generator derived from the run's seed."""
        return np.random.default_rng([self.seed, stream])
