"""Saving and loading run state: full checkpoints to go on training, and the model file.

Files are written to a temporary name, flushed to disk and renamed into place, so a kill at any
moment leaves either the previous file or the new one, never a torn one. Files are read with
`torch.load(weights_only=True)`: tensors, numbers, strings and containers only, so a crafted
pickle cannot run code; such a file is refused with a ConfigError naming it.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from omegaconf import DictConfig, OmegaConf

from rlrun.build import build, pick_device
from rlrun.config import ConfigError, with_added_keys
from rlrun.state import global_rng_state

MODEL_FILE = "model.pt"  # the networks at the end of the run
BEST_MODEL_FILE = "best_model.pt"  # the networks of the run's best evaluation
MODEL_FILES = {"final": MODEL_FILE, "best": BEST_MODEL_FILE}
CHECKPOINT_DIR = "checkpoints"

# Keys a resumed run may change; every other key (seed, env.*, algo.*) must match the checkpoint.
MUTABLE_KEYS = ("total_timesteps", "eval", "log", "checkpoint", "device", "threads", "resume")
MUTABLE_TEXT = "total_timesteps, eval.*, log.*, checkpoint.*, device and threads"


def atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """`write(f)` into `path` through a temporary file, flushed and renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) gives its space back; the previous file stays
        raise
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
        lines = str(err).splitlines() or ["the file is empty or cut short"]  # an EOFError has no message
        raise ConfigError("checkpoint", str(path), f"a readable rlrun checkpoint ({lines[0]})") from None


def save_model(path: Path, networks: dict[str, torch.nn.Module], config: dict, step: int) -> Path:
    """Networks as `{name: state_dict}`, with the config that builds them and the step they are from."""
    atomic_save({"config": config, "step": step, "networks": {n: net.state_dict() for n, net in networks.items()}}, path)
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


def _follows_mutable(value: Any) -> bool:
    """A value that is only an interpolation of a key resume may change (ppo's `lr_anneal_steps:
    ${total_timesteps}`): it changes with that key, so a raised budget also lengthens the annealing."""
    match = re.fullmatch(r"\$\{([\w.]+)\}", value) if isinstance(value, str) else None
    return match is not None and match[1].split(".")[0] in MUTABLE_KEYS


def check_same_run(saved: dict, cfg: DictConfig, run_dir: Path) -> None:
    """Refuse to continue a run with a config that changes what was being trained."""
    before = _flat(OmegaConf.to_container(with_added_keys(OmegaConf.create(saved)), resolve=False))
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    raw = _flat(OmegaConf.to_container(cfg, resolve=False))
    keys = sorted(set(before) | set(now), key=lambda k: (k not in ("algo.name", "env.name"), k))  # the gist first
    for key in keys:
        if key.split(".")[0] in MUTABLE_KEYS or before.get(key) == now.get(key) or _follows_mutable(raw.get(key)):
            continue
        if key not in before and now[key] in (None, False):  # a key added since, at its off default
            continue
        raise ConfigError(
            key,
            now.get(key),
            f"{before.get(key)!r}, as the run in {run_dir} was made with (resume may change only {MUTABLE_TEXT})",
        )


def stored_config(run_dir: Path, hydra_config: bytes | None) -> DictConfig:
    """The config a run was made with: its `.hydra/config.yaml` as it was before this command
    (`hydra_config`), else the one its newest checkpoint holds."""
    if hydra_config:
        try:
            stored = OmegaConf.create(hydra_config.decode())
        except Exception as err:  # noqa: BLE001  a damaged file: any of yaml's or omegaconf's errors
            raise ConfigError("resume", str(run_dir), f"a run whose .hydra/config.yaml is readable ({err})") from None
        if isinstance(stored, DictConfig) and "algo" in stored and "env" in stored:
            return with_added_keys(stored)
    found = latest_checkpoint(run_dir)  # its own, never a run's in a folder below it (a sweep's parent)
    if found is None:
        raise ConfigError("resume", str(run_dir), f"a run folder rlrun made (with .hydra/config.yaml or {CHECKPOINT_DIR}/)")
    return with_added_keys(OmegaConf.create(load_rlrun_file(found, "a checkpoint", "algo")["config"]))


def continued_config(cfg: DictConfig, stored: DictConfig, given: list[str], run_dir: Path) -> DictConfig:
    """The stored config with the keys resume may change taken from the command line (`given`,
    Hydra's override strings); any other key given must agree with the stored run's."""
    merged = stored.copy()
    for override in given:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in ("resume",) or key.startswith("hydra."):
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if key.split(".")[0] in MUTABLE_KEYS:
            OmegaConf.update(merged, key, value, merge=False, force_add=True)
            continue
        if key in ("algo", "env"):  # a group choice: compare what it chose
            key, value = f"{key}.name", OmegaConf.select(cfg, f"{key}.name")
        now, before = value, OmegaConf.select(stored, key, default=None)
        if _plain(now) != _plain(before):
            raise ConfigError(
                key, _plain(now), f"{_plain(before)!r}, as the run in {run_dir} was made with "
                f"(resume may change only {MUTABLE_TEXT})"
            )
    merged.resume = cfg.resume
    return merged


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def load_rlrun_file(path: Path, what: str, *needed: str, device: str = "cpu") -> dict:
    """A file rlrun wrote (`what`: "a checkpoint", "a model file"): its config and the `needed` keys;
    a ConfigError for anything else."""
    state = safe_load(path, device)
    if not (isinstance(state, dict) and set(needed) <= state.keys() and isinstance(state.get("config"), dict)):
        raise ConfigError("checkpoint", str(path), f"{what} written by rlrun (this file is not one)")
    return state


def load_for_eval(path: str | Path, which: str = "final", device: str = "cpu"):
    """(deterministic policy, config, step, file) of a run directory, a checkpoint or a model file.

    A run directory gives its newest checkpoint (`which="final"`) or its `best_model.pt` (`"best"`).
    `device` is a run's `device` value: cpu, cuda or auto.
    """
    device = str(pick_device(device))  # torch.load's map_location knows no "auto"
    path = Path(path)
    if path.is_dir() and which == "best":
        path = path / BEST_MODEL_FILE
        if not path.is_file():
            raise ConfigError("which", which, f"final: {path.parent} has no {BEST_MODEL_FILE} (it never evaluated)")
    if path.is_file() and path.name in MODEL_FILES.values():
        state = load_rlrun_file(path, "a model file", "networks", device=device)
        cfg = with_added_keys(OmegaConf.create({**state["config"], "device": device}))
        algo = build(cfg)
        load_networks(algo.networks(), state["networks"], path)
        return algo.act, cfg, int(state["step"]), path
    found = checkpoint_path(path)
    state = load_rlrun_file(found, "a checkpoint", "algo", device=device)
    cfg = with_added_keys(OmegaConf.create({**state["config"], "device": device}))
    algo = build(cfg)
    try:
        algo.load_state_dict(state["algo"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise ConfigError("checkpoint", str(found), f"a checkpoint of this run's algorithm ({err})") from None
    return algo.act, cfg, int(state["step"]), found


def load_networks(networks: dict[str, torch.nn.Module], states: dict, path: Path) -> None:
    try:
        for name, net in networks.items():
            net.load_state_dict(states[name])
    except (KeyError, RuntimeError) as err:
        raise ConfigError("checkpoint", str(path), f"networks that fit the config stored with them ({err})") from None


def load_policy(run_dir: str | Path, which: str = "final", device: str = "cpu"):
    """The trained deterministic policy of a finished run (`which`: "final" or "best"): a function
    from a batch of observations (numpy) to a batch of actions (numpy)."""
    path = Path(run_dir) / MODEL_FILES[which]
    if not path.is_file():
        raise ConfigError("run", str(run_dir), f"a finished run's directory (with {MODEL_FILES[which]})")
    return load_for_eval(path, which, device)[0]
