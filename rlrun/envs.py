"""Building gymnasium environments from the `env` config group."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

from rlrun.config import ConfigError

# Keys of an env config that describe the env rather than being passed to `gymnasium.make`.
_OWN_KEYS = ("name", "id", "max_episode_steps", "kwargs")


def make_kwargs(env_cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments for `gymnasium.make`: the env's `kwargs` plus its other own keys."""
    cfg = OmegaConf.to_container(env_cfg, resolve=True)
    kwargs = {k: v for k, v in cfg.items() if k not in _OWN_KEYS}
    kwargs.update(cfg.get("kwargs") or {})
    if cfg.get("max_episode_steps") is not None:
        kwargs["max_episode_steps"] = cfg["max_episode_steps"]
    return kwargs


def env_id(env_cfg: DictConfig) -> str:
    if OmegaConf.is_missing(env_cfg, "id") or not env_cfg.id:
        raise ConfigError("env.id", "???", "a registered gymnasium id, e.g. env.id=LunarLander-v3")
    return str(env_cfg.id)


def _guard(env_cfg: DictConfig, build):
    """Turn gymnasium's errors about ids and kwargs into one ConfigError line."""
    name = env_id(env_cfg)
    try:
        return build(name, make_kwargs(env_cfg))
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError("env.id", name, f"an env whose dependencies are installed ({err})") from None
    except gym.error.Error as err:
        raise ConfigError("env.id", name, f"a registered gymnasium id ({err})") from None
    except TypeError as err:
        raise ConfigError("env", name, f"keyword arguments that {name} accepts ({err})") from None


def make_env(env_cfg: DictConfig, **extra: Any) -> gym.Env:
    """One environment instance (evaluation, dynamic programming, video)."""
    return _guard(env_cfg, lambda name, kw: gym.make(name, **kw, **extra))


def make_vec_env(env_cfg: DictConfig, num_envs: int) -> gym.vector.VectorEnv:
    """`num_envs` copies stepped as one batch, numpy-vectorised where gymnasium has it.

    Autoreset is gymnasium's default NEXT_STEP: the step that ends an episode returns its final
    observation, and the following step resets that sub-env (its action is ignored).
    """

    def build(name, kw):
        has_vector_impl = gym.spec(name).vector_entry_point is not None
        mode = "vector_entry_point" if has_vector_impl else "sync"
        return gym.make_vec(name, num_envs=num_envs, vectorization_mode=mode, **kw)

    return _guard(env_cfg, build)


def describe_space(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Discrete):
        return f"Discrete({space.n})"
    if isinstance(space, gym.spaces.Box):
        return f"Box{space.shape}"
    return type(space).__name__


def require_action_space(env_cfg: DictConfig, space: gym.Space, kinds: tuple[type, ...], algo: str, hint: str = ""):
    """Refuse an algorithm/env pair whose action space the algorithm cannot handle."""
    if not isinstance(space, kinds):
        allowed = " or ".join(k.__name__ for k in kinds) + f" action spaces for algo={algo}"
        raise ConfigError("env", f"{env_cfg.name} ({describe_space(space)} actions)", allowed + hint)


def flat_obs_dim(space: gym.Space) -> int:
    """Size of an observation fed to an MLP (one-hot for Discrete observation spaces)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape))
