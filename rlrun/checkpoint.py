"""Saving and loading run state: full checkpoints to go on training, and the model file.

Files are written to a temporary name and renamed into place, so a kill mid-write leaves the
previous file intact. Files are read with `torch.load(weights_only=True)`: tensors, numbers,
strings and containers only, so a crafted pickle cannot run code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

MODEL_FILE = "model.pt"
CHECKPOINT_DIR = "checkpoints"


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def safe_load(path: Path, device: str | torch.device = "cpu") -> Any:
    return torch.load(path, map_location=device, weights_only=True)


def global_rng_state() -> dict:
    """Python's and torch's global generators. numpy's global one is not used by rlrun:
    algorithms draw from their own `np.random.Generator`, which they checkpoint themselves."""
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def set_global_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


def save_model(run_dir: Path, networks: dict[str, torch.nn.Module]) -> Path:
    """The trained networks as `{name: state_dict}` in `model.pt`."""
    path = run_dir / MODEL_FILE
    atomic_save({name: net.state_dict() for name, net in networks.items()}, path)
    return path


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int) -> Path:
    """Full run state at `step` into checkpoints/step_<step>.pt; keep the newest `keep` files."""
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"step_{step:012d}.pt"
    atomic_save({"step": step, "rng": global_rng_state(), **state}, path)
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / CHECKPOINT_DIR).glob("step_*.pt"))
    return found[-1] if found else None


def load_policy(run_dir: str | Path, device: str = "cpu"):
    """The trained deterministic policy of a finished run: a function from a batch of
    observations (numpy) to a batch of actions (numpy)."""
    from omegaconf import OmegaConf

    from rlrun import runner

    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.device = device
    algo = runner.build(cfg)
    networks = algo.networks()
    for name, state in safe_load(run_dir / MODEL_FILE, device).items():
        networks[name].load_state_dict(state)
    return algo.act
