"""A point in the square [-1, 1]^2 moved by a bounded velocity, in two forms.

`PointMassEnv` (rlrun/PointMass-v0): the goal is a parameter of the task, set by `set_goal`
(a task wrapper sets it before each reset); the observation is the position only and the reward
is minus the distance to the goal, so a policy that does not observe the task cannot know it.

`PointMassGoalEnv` (rlrun/PointMassGoal-v0): a goal env; the goal is drawn at each reset and
observed as `desired_goal`; reward 0 within `goal_radius` of it and -1 elsewhere.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from rlrun.gym_envs.goal_env import GoalEnv

_POINT = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
_FRAME_SIZE = 128  # pixels per side of a rendered frame
_DOT_RADIUS = 0.04  # radius of the drawn point (and of a goal without a success radius), in arena units


class _PointMass(gym.Env):
    """Dynamics shared by both forms: a uniform start in the arena, position += step_size * action."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, step_size: float, render_mode: str | None):
        self.step_size = float(step_size)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.position = np.zeros(2, dtype=np.float32)
        self.goal = np.zeros(2, dtype=np.float32)

    def _start(self) -> None:
        self.position = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)

    def _move(self, action: np.ndarray) -> None:
        velocity = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        self.position = np.clip(self.position + self.step_size * velocity, -1.0, 1.0).astype(np.float32)

    def _draw(self, goal_radius: float) -> np.ndarray:
        centres = (np.arange(_FRAME_SIZE) + 0.5) / _FRAME_SIZE * 2.0 - 1.0
        x, y = np.meshgrid(centres, -centres)  # image rows run downwards, y upwards
        frame = np.full((_FRAME_SIZE, _FRAME_SIZE, 3), 255, dtype=np.uint8)
        for centre, radius, colour in ((self.goal, goal_radius, (60, 170, 60)), (self.position, _DOT_RADIUS, (40, 70, 200))):
            frame[(x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2] = colour
        return frame


class PointMassEnv(_PointMass):
    """Reach a goal given by the task: reward -||position - goal|| each step, no termination.

    Observation: the position, Box([-1, 1]^2). Action: a velocity in [-1, 1]^2, scaled by `step_size`.
    Episodes end by the registered time limit (50 steps).
    """

    def __init__(self, goal: tuple[float, float] = (0.0, 0.0), step_size: float = 0.1, render_mode: str | None = None):
        super().__init__(step_size, render_mode)
        self.observation_space = _POINT
        self.set_goal(goal)

    def set_goal(self, goal) -> None:
        """Make `goal`, a point of [-1, 1]^2, the goal from the next step on (tasks set it before reset)."""
        goal = np.asarray(goal, dtype=np.float32)
        if goal.shape != (2,) or not np.all(np.abs(goal) <= 1.0):
            raise ValueError(f"goal {goal.tolist()} is not a point of the arena [-1, 1]^2")
        self.goal = goal.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._start()
        return self.position.copy(), {}

    def step(self, action):
        self._move(action)
        reward = -float(np.linalg.norm(self.position - self.goal))
        return self.position.copy(), reward, False, False, {}

    def render(self):
        return self._draw(_DOT_RADIUS) if self.render_mode == "rgb_array" else None


class PointMassGoalEnv(_PointMass, GoalEnv):
    """Goal env: reach a goal drawn uniformly at each reset (at least `goal_radius` from the start).

    Observation: {observation: position, achieved_goal: position, desired_goal: goal}, each in
    [-1, 1]^2. Success is a position within `goal_radius` of the goal; it gives reward 0, ends the
    episode (terminated) and sets `info["is_success"]`; every other step gives -1. Episodes that
    do not succeed end by the registered time limit (50 steps).
    """

    def __init__(self, goal_radius: float = 0.1, step_size: float = 0.1, render_mode: str | None = None):
        super().__init__(step_size, render_mode)
        self.goal_radius = float(goal_radius)
        self.observation_space = gym.spaces.Dict({"observation": _POINT, "achieved_goal": _POINT, "desired_goal": _POINT})

    def is_success(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        distance = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        return distance <= self.goal_radius

    def _observation(self) -> dict[str, np.ndarray]:
        return {"observation": self.position.copy(), "achieved_goal": self.position.copy(), "desired_goal": self.goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._start()
        self.goal = self.position
        while self.is_success(self.position, self.goal):  # an episode starts unsolved
            self.goal = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
        return self._observation(), {"is_success": False}

    def step(self, action):
        self._move(action)
        observation = self._observation()
        reward, terminated, info = self.goal_step(observation)
        return observation, reward, terminated, False, info

    def render(self):
        return self._draw(self.goal_radius) if self.render_mode == "rgb_array" else None
