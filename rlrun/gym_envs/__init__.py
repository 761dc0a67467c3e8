"""Environments shipped with rlrun (numpy only), registered as gymnasium ids on import.

    rlrun/PointMass-v0       2-D point mass; the goal is a task parameter (`set_goal`), reward -distance
    rlrun/PointMassGoal-v0   the same dynamics as a goal env: Dict observation, sparse reward, success radius
    rlrun/BitFlip-v0         flip bits to reach a target string (kwarg n_bits, default 10); a goal env

Importing this module again, or after the ids are registered, changes nothing.
"""

from __future__ import annotations

import gymnasium as gym

# id -> (entry point, time limit; None where the env ends its own episodes)
ENVS: dict[str, tuple[str, int | None]] = {
    "rlrun/PointMass-v0": ("rlrun.gym_envs.point_mass:PointMassEnv", 50),
    "rlrun/PointMassGoal-v0": ("rlrun.gym_envs.point_mass:PointMassGoalEnv", 50),
    "rlrun/BitFlip-v0": ("rlrun.gym_envs.bitflip:BitFlipEnv", None),
}


def register() -> None:
    """Register every id of `ENVS` not yet in gymnasium's registry."""
    for env_id, (entry_point, max_episode_steps) in ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)


register()
