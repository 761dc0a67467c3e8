"""The `rlrun` command: Hydra composes the config, rlrun checks it, `rlrun.runner` trains.

Every way a command can go wrong ends in one line on stderr and exit code 2: Hydra's own
composition errors (an unknown group option or key, a broken yaml in --config-dir), a bad value,
a run folder another process holds. A run folder that existed before the command keeps every
file it had.
"""

from __future__ import annotations

import difflib
import errno
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra._internal import utils as hydra_utils
from hydra._internal.hydra import Hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import rlrun
from rlrun import config, console, help, sweep  # noqa: F401  help registers the resolver of `rlrun --help`
from rlrun.algos import specs
from rlrun.config import ConfigError, config_dir
from rlrun.lock import LOCK_FILE, RunFolderInUse, RunLock
from rlrun.quiet import quiet_third_party
from rlrun.stops import Diverged, Interrupted

# `resume=RUN_DIR` makes RUN_DIR the run's folder (hydra.run.dir); otherwise a new dated one.
OmegaConf.register_new_resolver("rlrun.or_else", lambda value, default: value or default, replace=True)

HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


@dataclass
class RunFolder:
    """What the run folder held before Hydra wrote into it, and the lock this process holds on it."""

    path: Path
    created: Path | None  # the highest folder this command creates for it (None: the folder existed)
    entries: set[str] = field(default_factory=set)  # the names in it before
    hydra_files: dict[str, bytes] = field(default_factory=dict)  # .hydra/* before
    lock: RunLock | None = None
    key: str = "hydra.run.dir"  # the key that named the folder: resume or hydra.run.dir

    @classmethod
    def before_hydra(cls, path: Path) -> RunFolder:
        created = None
        if not path.exists():
            created = path
            while not created.parent.exists():
                created = created.parent
        entries = {p.name for p in path.iterdir()} if path.is_dir() else set()
        hydra = path / ".hydra"
        files = {n: (hydra / n).read_bytes() for n in HYDRA_FILES if (hydra / n).is_file()}
        return cls(path, created, entries, files)

    def restore(self) -> None:
        """Leave the folder as it was: put back what Hydra overwrote in `.hydra/`, remove what Hydra
        and rlrun added at the start (`.hydra/`, the lock file, the job's log), and the folder itself
        with its parents if this command created them."""
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
            return
        for name, content in self.hydra_files.items():
            (self.path / ".hydra" / name).write_bytes(content)
        for added in self.path.iterdir():
            if added.name not in self.entries and (added.name in (".hydra", LOCK_FILE) or added.suffix == ".log"):
                shutil.rmtree(added) if added.is_dir() else added.unlink()


folders: dict[Path, RunFolder] = {}  # this process's single run, recorded before Hydra writes into it
sweeps: list[Path] = []  # this process's sweep folder


def fail(message: str, run_dir: Path | None = None) -> None:
    """One line on stderr, exit code 2; the run folder is left as it was before the command (a sweep
    job never gets here: `sweep.isolated` records its error instead)."""
    print(f"rlrun: error: {message}", file=sys.stderr)
    folder = folders.get(run_dir) if run_dir is not None else None
    if folder is not None:
        folder.restore()
    sys.exit(2)


class CheckOutputDir(Callback):
    """Before Hydra writes anything: the folder must be writable and no other process's; what it
    holds already is remembered, so a refused command can leave it as it was."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        key = "resume" if config.get("resume") else "hydra.run.dir"
        path = Path(str(config.hydra.run.dir))
        folder = RunFolder.before_hydra(path)
        self.check(key, path)
        folder.lock = self.hold(key, path, folder)
        folder.key = key
        folders[path.resolve()] = folder

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        for folder in folders.values():
            folder.lock.release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        rlrun.imports_done()  # the sweep's own process may run no job itself: collect garbage as usual
        self.check("hydra.sweep.dir", Path(str(config.hydra.sweep.dir)))
        sweeps.append(Path(str(config.hydra.sweep.dir)))
        self.sweep_lock = self.hold("hydra.sweep.dir", Path(str(config.hydra.sweep.dir)), None)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_lock.release()

    @staticmethod
    def hold(key: str, path: Path, folder: RunFolder | None) -> RunLock:
        lock = RunLock(path, key)
        try:
            lock.acquire()
        except ConfigError as err:
            if folder is not None and folder.created is not None:
                shutil.rmtree(folder.created, ignore_errors=True)
            fail(str(err))
        return lock

    @staticmethod
    def check(key: str, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as err:
            fail(str(ConfigError(key, str(folder), f"a folder rlrun can write to ({err.strerror or err})")))


def stop(code: int, message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


class StopRequested(BaseException):
    """SIGTERM before the training loop took over the signal (building, importing)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def stop_before_training(signum: int, frame) -> None:
    raise StopRequested(signum)


def again_command(run_dir: Path, sweeping: bool) -> str:
    """The exact command that continues this run or sweep."""
    if not sweeping:
        return f"rlrun resume={shlex.quote(str(run_dir))}"
    args = [a for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir=")]
    sweep_dir = f"hydra.sweep.dir={HydraConfig.get().sweep.dir}"
    return " ".join(["rlrun", *map(shlex.quote, args), shlex.quote(sweep_dir)])


def check_keys(cfg: DictConfig) -> None:
    """Refuse keys no config defines (`+algo.lrr=0.1` composes, and would be ignored)."""
    spec = specs.get(cfg.algo.get("name"))
    unknown = [f"algo.{k}" for k in cfg.algo if k != "name" and k not in spec.rules]
    known_top = {key.split(".")[0] for key in config.RULES} | {"env", "algo", "task"}
    unknown += [k for k in cfg if k not in known_top]
    for group in {key.split(".")[0] for key in config.RULES if "." in key}:
        unknown += [f"{group}.{k}" for k in cfg[group] if f"{group}.{k}" not in config.RULES]
    if unknown:
        key = unknown[0]
        raise ConfigError(key, OmegaConf.select(cfg, key), f"a key the config defines{closest(key, cfg.algo.name)}")


def closest(key: str, algo: str | None) -> str:
    candidates = list(config.RULES) + [f"algo.{k}" for k in (specs.SPECS[algo].rules if algo in specs.SPECS else [])]
    matches = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    return f" (closest: {', '.join(matches)})" if matches else ""


def hydra_error_line(err: Exception) -> str:
    """Hydra's multi-line composition errors as rlrun's one line: key, value, what is allowed."""
    text = str(err)
    missing = re.search(r"Could not find '([^/']+)/([^']*)'", text)
    if missing:
        group, option = missing.groups()
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        allowed = "one of " + ", ".join(options) if options else f"an option in configs/{group}/"
        return str(ConfigError(group, option, f"{allowed} (configs/{group}/)"))
    override = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' is not in struct", text)
    if override:
        key = override.group(1)
        given = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.lstrip("+~").split("=", 1)[0] == key), None)
        algo = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("algo=")), "reinforce")
        return str(ConfigError(key, given, f"a key the config defines{closest(key, algo)}"))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"the command line or config did not compose: {' '.join(lines[:3])}"


def run_and_report(func):
    """Hydra's own error reporting, with composition errors as one line and exit code 2. A full
    disk or a stop request while Hydra sets the run up (writing `.hydra/`) is one line too, and
    leaves the run folder as it was, with no half-written config file that looks like a run."""
    try:
        return func()
    except (HydraException, OmegaConfBaseException) as err:
        print(f"rlrun: error: {hydra_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        full = disk_full(err)
        if full is None:
            raise
        unstarted = leave_unstarted_folders()
        if unstarted:  # Hydra was writing the run's .hydra/
            line = disk_full_line(full, unstarted[0].key, unstarted[0].path, "the folder is left as it was")
        else:  # a sweep, between its jobs
            line = disk_full_line(full, "hydra.sweep.dir", sweeps[-1] if sweeps else Path.cwd(), "finished runs are kept")
        print(f"rlrun: error: {line}", file=sys.stderr)
        sys.exit(2 if unstarted else 1)
    except (StopRequested, KeyboardInterrupt) as err:
        signum = err.signum if isinstance(err, StopRequested) else signal.SIGINT
        if leave_unstarted_folders():
            where = "before the run began; its folder is left as it was"
        else:
            where = "outside a run; what was saved is kept" if started else "before the run began; nothing was written"
        print(f"rlrun: stopped by {signal.strsignal(signum)} {where}", file=sys.stderr)
        sys.exit(128 + signum)


started: set[Path] = set()  # the run folders whose task (rlrun's own code) has begun
single_run_done = False  # a run (not a sweep) trained to its end in this process


def leave_unstarted_folders() -> list[RunFolder]:
    """Put back, as they were, the folders Hydra prepared for a run that never began; return them."""
    unstarted = [folder for path, folder in folders.items() if path not in started]
    for folder in unstarted:
        folder.restore()
    return unstarted


def disk_full(err: BaseException | None) -> OSError | None:
    """The OSError saying the disk (or the user's quota) is full, in `err` or what it was raised from."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err
        err = err.__cause__ or err.__context__
    return None


def disk_full_line(err: OSError, key: str, run_dir: Path, outcome: str) -> str:
    """The standard line for a full disk, with what became of the run (`outcome`)."""
    where = f" writing {err.filename}" if err.filename else ""
    return str(ConfigError(key, str(run_dir), f"a folder on a disk with free space ({err.strerror}{where}; {outcome})"))


def newest_checkpoint(run_dir: Path) -> str:
    """Checkpoints are written atomically, so the newest one on disk is whole whenever the disk filled."""
    found = sorted(run_dir.rglob("checkpoints/step_*.pt"))
    return f"the last good checkpoint is {found[-1]}" if found else "no checkpoint was saved"


def thread_failed(args) -> None:
    """A full disk also ends TensorBoard's writer thread; the main thread reports it in one line, so
    the thread's traceback is not printed. Anything else is printed as Python would."""
    if disk_full(args.exc_value) is None:
        threading.__excepthook__(args)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    global single_run_done
    quiet_third_party()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    folder = folders.get(run_dir.resolve())
    started.add(run_dir.resolve())
    previous = signal.signal(signal.SIGTERM, stop_before_training)
    try:
        if sweeping:
            with RunLock(run_dir, key="hydra.sweep.dir"):  # a requeued job while its earlier self still runs
                job = lambda: sweep.train_seeds(announced(prepared(cfg, run_dir, None), run_dir), run_dir)
                return sweep.isolated(job, run_dir)
        result = sweep.train_seeds(announced(prepared(cfg, run_dir, folder), run_dir), run_dir)
        single_run_done = True
        return result
    except RunFolderInUse as err:
        fail(str(err))  # the folder is another process's: leave every file in it as it is
    except ConfigError as err:
        fail(str(err), run_dir.resolve())
    except Diverged as err:
        stop(1, f"rlrun: error: {err}")
    except Interrupted as err:
        stop(128 + err.signum, f"rlrun: {err}; continue with: {again_command(run_dir, sweeping)}")
    except StopRequested as err:
        stop(128 + err.signum, f"rlrun: stopped by {signal.strsignal(err.signum)} outside the training loop, nothing saved since the "
             f"newest checkpoint; "
             f"continue with: {again_command(run_dir, sweeping)}")
    except KeyboardInterrupt:
        stop(130, f"rlrun: interrupted; nothing saved since the newest checkpoint; "
             f"continue with: {again_command(run_dir, sweeping)}")
    except OSError as err:
        full = disk_full(err)
        if full is None:
            raise
        key, named = (folder.key, folder.path) if folder is not None else ("hydra.sweep.dir", run_dir)
        stop(1, f"rlrun: error: {disk_full_line(full, key, named, newest_checkpoint(run_dir))}; "
             f"free some space and continue with: {again_command(run_dir, sweeping)}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    return None


def prepared(cfg: DictConfig, run_dir: Path, folder: RunFolder | None) -> DictConfig:
    """The config to train with, checked before torch is imported: with `resume`, the run's own
    config with the keys resume may change taken from the command line."""
    if cfg.get("resume") is not None and folder is not None:
        stored = checkpoint_config(run_dir, folder)
        cfg = continued(cfg, stored, run_dir)
        try:
            (run_dir / ".hydra").mkdir(exist_ok=True)
            OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
            for name in ("hydra.yaml", "overrides.yaml"):
                if name in folder.hydra_files:  # the run's own, not this command's
                    (run_dir / ".hydra" / name).write_bytes(folder.hydra_files[name])
        except OSError:
            folder.restore()  # a full disk: the run's own files back, not half-written ones
            raise
    specs.validate(cfg)
    check_keys(cfg)
    return cfg


def announced(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """The run's first line, as soon as its config is checked: before torch is imported."""
    logging.getLogger("rlrun").info(console.first_line(cfg, run_dir, dict(HydraConfig.get().runtime.choices)))
    return cfg


def checkpoint_config(run_dir: Path, folder: RunFolder) -> DictConfig:
    from rlrun.checkpoint import stored_config

    return stored_config(run_dir, folder.hydra_files.get("config.yaml"))


def continued(cfg: DictConfig, stored: DictConfig, run_dir: Path) -> DictConfig:
    from rlrun.checkpoint import continued_config

    return continued_config(cfg, stored, list(HydraConfig.get().overrides.task), run_dir)


# Where the config could come from other than rlrun's configs/, or set hydra.mode itself.
OTHER_CONFIG_FLAGS = ("-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name")
MODE_KEYS = ("hydra.mode", "hydra.searchpath")
hydra_get_mode = Hydra.get_mode


def mode_needs_composing(args: list[str]) -> bool:
    """Whether the command line could make `hydra.mode` anything but unset: it sets the key, or
    brings configs other than rlrun's own (none of which sets it: tests/test_configs.py)."""
    for arg in args:
        key = arg.split("=", 1)[0]
        if key in OTHER_CONFIG_FLAGS or key.lstrip("+~").startswith(MODE_KEYS):
            return True
    return False


def get_mode(self: Hydra, config_name: str | None, overrides: list[str]):
    """Hydra composes the whole config twice per command (about 0.1 s each): once only to read
    `hydra.mode`, then to run. With rlrun's own configs the key is unset (None, what the first
    composition would find), and Hydra runs a sweep if and only if the command says -m."""
    if mode_needs_composing(sys.argv[1:]):
        return hydra_get_mode(self, config_name, overrides)
    return None


HYDRA_UNQUOTED = re.compile(r"[\w\-/\\+.$%*@?| ]*")  # what Hydra's grammar takes as a value without quotes


def quoted_paths(args: list[str]) -> list[str]:
    """`key=PATH` as typed, where PATH is an existing file or folder whose name holds what Hydra
    would read as grammar: run folders are named `..._algo.lr=0.01,experiment=ppo_pendulum` and
    sweep folders `algo.lr=0.01/seed=0`, so `resume=`, `algo.expert=`, `algo.dataset=` get them quoted."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        special = sep and not arg.startswith("-") and "'" not in value and not HYDRA_UNQUOTED.fullmatch(value)
        out.append(f"{key}='{value}'" if special and os.path.exists(value) else arg)
    return out


def main() -> None:
    hydra_utils.run_and_report = run_and_report
    Hydra.get_mode = get_mode
    sys.argv[1:] = quoted_paths(sys.argv[1:])
    # a stop request from here on is rlrun's one line (rlrun/__init__.py's handler covered the imports)
    signal.signal(signal.SIGTERM, stop_before_training)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.excepthook = thread_failed
    logging.raiseExceptions = False  # a full disk must not print a traceback for every line logged to the run's file
    rlrun.pause_gc()  # until torch is imported (`python -m rlrun.cli`; the `rlrun` command paused it already)
    try:
        hydra_main()
    finally:
        rlrun.resume_gc()  # a command that stopped before training (a refused value, --help) ends with it paused


def command() -> None:
    """The `rlrun` command: `main`, and after a single run that ended well the process exits at once,
    with its log and streams flushed. Python's own shutdown would first tear down torch's modules one
    by one, about 0.2 s of a 3 s run, for nothing a user keeps. Sweeps, failures and every other
    command exit as usual (a sweep's launcher may still have workers to wait for), and so does a run
    under a profiler or a tracer (cProfile, coverage), which writes its results at shutdown."""
    main()
    if single_run_done and sys.getprofile() is None and sys.gettrace() is None:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    from rlrun.cli import command as imported_command  # the module Hydra's callbacks see, not a second copy

    imported_command()
