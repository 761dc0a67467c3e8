"""The algorithm registry (config `algo.name` -> class) and what every algorithm is given.

An algorithm is a class with
    RULES: dict[str, Rule]                 what each key of its yaml accepts
    __init__(cfg, ctx)                      builds networks, optimisers and envs from `ctx`
    iterate() -> (env_steps, metrics)       one pass of the lecture's box: collect, estimate, improve
    act(obs) -> actions                     the deterministic policy, batched, for evaluation
    networks() -> dict[str, nn.Module]      what the model file holds
    state_dict() / load_state_dict(state)   everything `iterate` needs to go on after a restart
and optionally `finished: bool` (true once there is nothing left to do, e.g. converged), and
`x_axis = "iterations"` for an algorithm that takes no env steps (its metrics are plotted per iteration).
The runner (rlrun.runner) owns the repeat-until-budget loop, evaluation, logging and checkpoints,
so each algorithm file reads as its algorithm and nothing else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlrun import envs
from rlrun.config import ConfigError

# name -> "module:Class"; modules are imported on use so one algorithm's imports never slow another.
REGISTRY: dict[str, str] = {
    "reinforce": "rlrun.algos.reinforce:Reinforce",
    "fqi": "rlrun.algos.fqi:FittedQIteration",
    "qtopt": "rlrun.algos.qtopt:QTOpt",
    "actor_critic": "rlrun.algos.actor_critic:ActorCritic",
    "ppo": "rlrun.algos.ppo:PPO",
    "value_iteration": "rlrun.algos.dynamic_programming:ValueIteration",
    "policy_iteration": "rlrun.algos.dynamic_programming:PolicyIteration",
}


def plain(cfg: DictConfig) -> SimpleNamespace:
    """An algorithm's config as plain attributes, interpolations resolved: reading a DictConfig key
    costs ~0.1 ms, which adds up in loops that read hyperparameters at every step."""
    return SimpleNamespace(**OmegaConf.to_container(cfg, resolve=True))


def get(name: str) -> type:
    if name not in REGISTRY:
        raise ConfigError("algo.name", name, "one of " + ", ".join(sorted(REGISTRY)))
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


@dataclass
class Context:
    """What an algorithm gets from the runner: env construction, seed, device, run directory."""

    env_cfg: DictConfig
    seed: int
    device: torch.device
    run_dir: Path | None = None  # where artefacts beyond metrics go (arrays, pictures)

    def make_vec_env(self, num_envs: int) -> gym.vector.VectorEnv:
        return envs.make_vec_env(self.env_cfg, num_envs)

    def make_env(self, **kwargs) -> gym.Env:
        return envs.make_env(self.env_cfg, **kwargs)

    @cached_property
    def spaces(self) -> tuple[gym.Space, gym.Space]:
        """(observation space, action space) of one env instance."""
        env = self.make_env()
        spaces = env.observation_space, env.action_space
        env.close()
        return spaces

    def rng(self, stream: int = 0) -> np.random.Generator:
        """An independent numpy generator derived from the run's seed."""
        return np.random.default_rng([self.seed, stream])
