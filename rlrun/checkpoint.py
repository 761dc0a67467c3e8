"""Saving and loading run state: full checkpoints to go on training, and the model file.

Files are written to a temporary name, flushed to disk and renamed into place, so a kill at any
moment leaves either the previous file or the new one, never a torn one. Files are read with
`torch.load(weights_only=True)`: tensors, numbers, strings and containers only, so a crafted
pickle cannot run code; such a file is refused with a ConfigError naming it.
"""

from __future__ import annotations

import os
import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlrun.config import ConfigError

MODEL_FILE = "model.pt"
CHECKPOINT_DIR = "checkpoints"

# Keys a resumed run may change; every other key (seed, env.*, algo.*) must match the checkpoint.
MUTABLE_KEYS = ("total_timesteps", "eval", "log", "checkpoint", "device", "threads", "resume")
MUTABLE_TEXT = "total_timesteps, eval.*, log.*, checkpoint.*, device and threads"


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    # the rename itself survives a power cut only once the folder is flushed too
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def safe_load(path: Path, device: str | torch.device = "cpu") -> Any:
    """The file's contents; a ConfigError if it holds anything but plain data, or is damaged."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about a foreign pickle protocol, then refuses it
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if "nsupported" in line), lines[-1] if lines else "")
        raise ConfigError("checkpoint", str(path), f"a file of tensors and plain data; refused to load it ({reason})")
    except (RuntimeError, EOFError, OSError) as err:
        raise ConfigError("checkpoint", str(path), f"a readable rlrun checkpoint ({str(err).splitlines()[0]})")


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


def plain_state(obj: Any) -> dict:
    """The numbers, arrays and random generators of `obj` and of the envs and spaces it holds.

    For envs that carry episodes across iterations: positions, time-limit counters, autoreset flags
    and generators, as data `safe_load` accepts, so a resumed run steps on from the same states.
    What is not plain data (renderers, specs) is left out; it does not change between steps.
    """
    state: dict[str, tuple[str, Any]] = {}
    for key, value in vars(obj).items():
        if isinstance(value, np.random.Generator):
            state[key] = ("generator", value.bit_generator.state)
        elif isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf":
            state[key] = ("array" if isinstance(value, np.ndarray) else "scalar", torch.from_numpy(np.array(value)))
        elif value is None or isinstance(value, (bool, int, float, str)):
            state[key] = ("value", value)
        elif isinstance(value, (gym.Env, gym.vector.VectorEnv, gym.Space)):
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
        elif kind == "value":
            setattr(obj, key, value)
        elif kind == "object":
            load_plain_state(getattr(obj, key), value)
        else:
            for item, item_state in zip(getattr(obj, key), value, strict=True):
                load_plain_state(item, item_state)


def save_model(run_dir: Path, networks: dict[str, torch.nn.Module]) -> Path:
    """The trained networks as `{name: state_dict}` in `model.pt`."""
    path = run_dir / MODEL_FILE
    atomic_save({name: net.state_dict() for name, net in networks.items()}, path)
    return path


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int) -> Path:
    """Full run state at `step` into checkpoints/step_<step>.pt; keep the newest `keep` files.

    A `.tmp` left by a kill during an earlier save is removed here: it was never a checkpoint.
    """
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("*.tmp"):
        stale.unlink()
    path = folder / f"step_{step:012d}.pt"
    atomic_save({"step": step, "rng": global_rng_state(), **state}, path)
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / CHECKPOINT_DIR).glob("step_*.pt"))
    return found[-1] if found else None


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file itself, or the newest checkpoint of a run directory."""
    path = Path(path)
    if path.is_file():
        return path
    found = latest_checkpoint(path) if path.is_dir() else None
    if found is None:
        raise ConfigError(
            "checkpoint", str(path), f"a run directory holding {CHECKPOINT_DIR}/step_*.pt, or such a file"
        )
    return found


def _flat(container: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in container.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def check_same_run(saved: dict, cfg: DictConfig, run_dir: Path) -> None:
    """Refuse to continue a run with a config that changes what was being trained."""
    before = _flat(saved)
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    keys = sorted(set(before) | set(now), key=lambda k: (k not in ("algo.name", "env.name"), k))  # the gist first
    for key in keys:
        if key.split(".")[0] in MUTABLE_KEYS or before.get(key) == now.get(key):
            continue
        raise ConfigError(
            key,
            now.get(key),
            f"{before.get(key)!r}, as the run in {run_dir} was made with (resume may change only {MUTABLE_TEXT})",
        )


def restore_config(run_dir: Path) -> None:
    """Put back `.hydra/config.yaml` of an existing run after a refused attempt to continue it:
    Hydra writes the new command line's config there before rlrun can check it."""
    path = latest_checkpoint(run_dir)
    if path is not None and (run_dir / ".hydra").is_dir():
        saved = safe_load(path)["config"]
        OmegaConf.save(OmegaConf.create(saved), run_dir / ".hydra" / "config.yaml")


def load_policy(run_dir: str | Path, device: str = "cpu"):
    """The trained deterministic policy of a finished run: a function from a batch of
    observations (numpy) to a batch of actions (numpy)."""
    from rlrun import runner

    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.device = device
    algo = runner.build(cfg)
    networks = algo.networks()
    for name, state in safe_load(run_dir / MODEL_FILE, device).items():
        networks[name].load_state_dict(state)
    return algo.act
