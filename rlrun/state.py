"""Capturing state as plain data: the global random generators, and the arrays, numbers and
generators of envs and collectors, in a form `torch.load(weights_only=True)` accepts back."""

from __future__ import annotations

import random
from typing import Any

import gymnasium as gym
import numpy as np
import torch


def global_rng_state() -> dict:
    """The global generators of python, numpy and torch (CPU, and CUDA when present)."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {**np_state, "state": {"key": np_state["state"]["key"].tolist(), "pos": np_state["state"]["pos"]}},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_global_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_plain_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def plain_state(obj: Any) -> dict:
    """The numbers, arrays (also dicts of arrays: Dict observations) and random generators of `obj`
    and of the envs and spaces it holds.

    For envs that carry episodes across iterations: positions, time-limit counters, autoreset flags
    and generators, as data `safe_load` accepts, so a resumed run steps on from the same states.
    What is not plain data (renderers, specs) is left out; it does not change between steps. An env
    whose `keeps_state` is false (rlrun.envpool_vec: its envs live in envpool) is left out whole.
    """
    state: dict[str, tuple[str, Any]] = {}
    for key, value in vars(obj).items():
        if isinstance(value, np.random.Generator):
            state[key] = ("generator", value.bit_generator.state)
        elif isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf":
            state[key] = ("array" if isinstance(value, np.ndarray) else "scalar", torch.from_numpy(np.array(value)))
        elif isinstance(value, dict) and value and all(_is_plain_array(v) for v in value.values()):
            state[key] = ("arrays", {k: torch.from_numpy(v.copy()) for k, v in value.items()})
        elif value is None or isinstance(value, (bool, int, float, str)):
            state[key] = ("value", value)
        elif isinstance(value, (gym.Env, gym.vector.VectorEnv, gym.Space)) and getattr(value, "keeps_state", True):
            state[key] = ("object", plain_state(value))
        elif isinstance(value, list) and value and all(isinstance(v, gym.Env) for v in value):
            state[key] = ("objects", [plain_state(v) for v in value])
    return state


def load_plain_state(obj: Any, state: dict) -> None:
    """Put back what `plain_state` took from an object built the same way."""
    for key, (kind, value) in state.items():
        if kind == "generator":
            if not isinstance(getattr(obj, key), np.random.Generator):
                setattr(obj, key, np.random.default_rng())
            getattr(obj, key).bit_generator.state = value
        elif kind in ("array", "scalar"):
            array = value.cpu().numpy().copy()
            setattr(obj, key, array if kind == "array" else array[()])
        elif kind == "arrays":
            setattr(obj, key, {k: v.cpu().numpy().copy() for k, v in value.items()})
        elif kind == "value":
            setattr(obj, key, value)
        elif kind == "object":
            load_plain_state(getattr(obj, key), value)
        else:
            for item, item_state in zip(getattr(obj, key), value, strict=True):
                load_plain_state(item, item_state)
