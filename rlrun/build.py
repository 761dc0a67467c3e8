"""From a composed config to a ready algorithm: validate, seed, pick the device, build.

Validation that needs no torch (`rlrun.algos.specs.validate`, the task distribution, then the env
with its tasks and spaces, then the memory the config asks for) runs first, so a bad value is
refused before any network or buffer exists.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import random
from collections.abc import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlrun import envs, memory, tasks
from rlrun.algos import specs
from rlrun.algos.base import Algorithm, Context
from rlrun.config import ConfigError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "auto or cpu (torch sees no CUDA device here)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> None:
    """Have glibc's malloc keep the memory of freed tensors for the next ones, instead of returning it.

    By default a block above the mmap threshold (adapting up to the largest freed so far) is mapped
    for each allocation, and freed memory at the heap's top beyond twice that is handed back to the
    kernel. qtopt's CEM search over 640 states x 16 actions frees several 2.6 MB activations at once,
    so each search faulted its pages in afresh: under torch's profiler its ReLUs took 350 us a call,
    175 us with the memory kept (62 us on warm memory), and a qtopt iteration on Pendulum 20-30 ms
    instead of 14-16 ms. Blocks up to 32 MiB (the most glibc allows) now come from the heap, which keeps
    up to 512 MiB free before trimming; a replay buffer larger than 32 MiB is still mapped on its own.
    Elsewhere than glibc (macOS, musl) this does nothing."""
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return
    libc = ctypes.CDLL(None)  # the process's own symbols: glibc's malloc
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 512 << 20)


def algorithm_class(name: str) -> type[Algorithm]:
    module, cls = specs.get(name).target.split(":")
    return getattr(importlib.import_module(module), cls)


def task_config(cfg: DictConfig) -> DictConfig | None:
    """The run's task distribution (`task=<preset>`, configs/task/), or None for one fixed MDP."""
    return OmegaConf.select(cfg, "task", default=None)


def build(cfg: DictConfig, load_policy: Callable[[str, str], Callable] | None = None) -> Algorithm:
    """Validate the config and build the algorithm; raises ConfigError on any bad value.

    `load_policy` (see `Context.load_policy`) lets an algorithm use another run's policy; without it
    such an algorithm builds only to act (rlrun-eval)."""
    specs.validate(cfg)
    task_cfg = task_config(cfg)
    if task_cfg is not None:
        tasks.check(task_cfg)
    device = pick_device(cfg.device)
    spaces = envs.check_env(
        cfg.env, lambda obs_space, action_space: specs.check_spaces(cfg, obs_space, action_space), task_cfg
    )
    memory.check(memory.run_needs(cfg, spaces))
    ctx = Context(env_cfg=cfg.env, seed=cfg.seed, device=device, spaces=spaces, task_cfg=task_cfg, load_policy=load_policy)
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    keep_freed_memory()
    return algorithm_class(cfg.algo.name)(cfg.algo, ctx)
