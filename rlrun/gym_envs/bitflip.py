"""BitFlip (rlrun/BitFlip-v0): turn a string of n bits into a target string, one flip per step.

The HER paper's example of a sparse-reward task that exploration alone fails at as n grows:
random flips hit the one target among 2^n strings ever more rarely.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from rlrun.gym_envs.goal_env import GoalEnv

_CELL = 16  # pixels per bit in a rendered frame


class BitFlipEnv(GoalEnv):
    """Goal env over bit strings.

    Action `i` (Discrete(n_bits)) flips bit `i`. Observation: {observation: current bits,
    achieved_goal: current bits, desired_goal: target bits}, float32 arrays of 0s and 1s. Start
    and target are drawn at reset and differ. Reaching the target gives reward 0, ends the episode
    (terminated) and sets `info["is_success"]`; every other step gives -1. An episode is truncated
    after n_bits steps, enough to solve any start.
    """

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, n_bits: int = 10, render_mode: str | None = None):
        if isinstance(n_bits, bool) or not isinstance(n_bits, int) or n_bits < 1:
            raise ValueError(f"n_bits={n_bits!r}: a positive integer is needed")
        self.n_bits = n_bits
        self.render_mode = render_mode
        bits = gym.spaces.Box(0.0, 1.0, shape=(n_bits,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict({"observation": bits, "achieved_goal": bits, "desired_goal": bits})
        self.action_space = gym.spaces.Discrete(n_bits)
        self.bits = np.zeros(n_bits, dtype=np.float32)
        self.target = np.ones(n_bits, dtype=np.float32)
        self.steps = 0

    def is_success(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        return np.all(np.asarray(achieved_goal) == np.asarray(desired_goal), axis=-1)

    def _draw_bits(self) -> np.ndarray:
        return self.np_random.integers(0, 2, size=self.n_bits).astype(np.float32)

    def _observation(self) -> dict[str, np.ndarray]:
        return {"observation": self.bits.copy(), "achieved_goal": self.bits.copy(), "desired_goal": self.target.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.bits = self._draw_bits()
        self.target = self.bits
        while self.is_success(self.bits, self.target):  # an episode starts unsolved
            self.target = self._draw_bits()
        self.steps = 0
        return self._observation(), {"is_success": False}

    def step(self, action):
        flipped = int(action)
        self.bits[flipped] = 1.0 - self.bits[flipped]
        self.steps += 1
        observation = self._observation()
        reward, terminated, info = self.goal_step(observation)
        return observation, reward, terminated, self.steps >= self.n_bits, info

    def render(self):
        """Two rows of cells, current bits above target bits; a set bit is dark."""
        if self.render_mode != "rgb_array":
            return None
        rows = np.stack([self.bits, self.target])
        shades = np.where(rows > 0.5, 30, 230).astype(np.uint8)
        frame = np.repeat(np.repeat(shades, _CELL, axis=0), _CELL, axis=1)
        return np.repeat(frame[:, :, None], 3, axis=2)
