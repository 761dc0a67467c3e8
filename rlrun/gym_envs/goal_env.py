"""The goal-env convention of Gymnasium-Robotics, without depending on that package.

A goal env's observation is a dict `{observation, achieved_goal, desired_goal}`; its reward and
termination are functions of (achieved goal, desired goal) only, computed by `compute_reward`,
`compute_terminated` and `compute_truncated`, which accept one goal pair or a batch of shape
[B, goal_dim]. Hindsight relabelling calls them on stored transitions with substituted goals.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class GoalEnv(gym.Env):
    """Sparse goal reaching: reward 0 on success and -1 otherwise; success terminates the episode.

    Subclasses define `is_success`; `step` must report reward and termination through the
    `compute_*` methods so that relabelled transitions get exactly what the env would have given.
    """

    def is_success(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Bool array of shape `achieved_goal.shape[:-1]`: which achieved goals reach their desired goal."""
        raise NotImplementedError

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """Float32 rewards, shape `achieved_goal.shape[:-1]`: 0 where the goal is reached, -1 elsewhere."""
        return np.where(self.is_success(achieved_goal, desired_goal), 0.0, -1.0).astype(np.float32)

    def compute_terminated(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """Bool array, shape `achieved_goal.shape[:-1]`: reaching the goal ends the episode."""
        return self.is_success(achieved_goal, desired_goal)

    def compute_truncated(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """Bool array of False, shape `achieved_goal.shape[:-1]`: time limits do not depend on goals."""
        return np.zeros(np.shape(achieved_goal)[:-1], dtype=bool)

    def goal_step(self, observation: dict[str, np.ndarray]) -> tuple[float, bool, dict[str, Any]]:
        """Reward, termination and info of a step that led to `observation`, from the compute_* methods."""
        achieved, desired = observation["achieved_goal"], observation["desired_goal"]
        success = bool(self.compute_terminated(achieved, desired, None))
        info = {"is_success": success}
        return float(self.compute_reward(achieved, desired, info)), success, info
