"""One rlrun process per run folder: an exclusive lock on a file inside it.

Two processes writing one run folder mix their checkpoints and event files. `RunLock` takes an
exclusive, non-blocking `flock` on `<run_dir>/.lock`; while one process holds it, another is
refused with a ConfigError naming the holder's pid and start time. The kernel drops the lock when
its holder exits, however it exits, so a lock file left behind by `kill -9` never blocks a resume.
The file itself stays (deleting it on release would let two processes lock two different files).
Meant for local disks: `flock` gives no guarantee across machines sharing a network file system.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import final

from rlrun.config import ConfigError

LOCK_FILE = ".lock"  # inside the run folder; listings of a run's files may skip it
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_held: dict[Path, RunLock] = {}  # folders this process holds, by resolved path
_held_guard = threading.Lock()


class RunFolderInUse(ConfigError):
    """The run folder is held by another process, or already by this one. A ConfigError, so the
    CLI prints its one line; its own class, so the caller knows the folder belongs to someone else."""


@final
class RunLock:
    """`with RunLock(run_dir, key="hydra.run.dir"):` holds `run_dir` for this process, creating
    the folder if needed. Raises RunFolderInUse when another process (or this one) holds it, and
    ConfigError naming `key` when the folder cannot hold a lock file (read-only, not a folder)."""

    def __init__(self, run_dir: str | Path, key: str = "hydra.run.dir"):
        self.run_dir = Path(run_dir)
        self.key = key
        self.since: str | None = None
        self._fd: int | None = None
        self._folder: Path | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock now or raise; never waits."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            folder = self.run_dir.resolve()
            with _held_guard:
                if folder in _held:
                    since = _held[folder].since
                    raise self._in_use(f"this process, {os.getpid()}, already holds it since {since} for another run")
                fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _describe_holder(fd)
                    os.close(fd)
                    raise self._in_use(f"{holder}; let it finish or stop it, or use another folder") from None
                except OSError:
                    os.close(fd)
                    raise
                self._fd, self._folder = fd, folder
                _held[folder] = self
                self.since = datetime.now().strftime(_TIME_FORMAT)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps({"pid": os.getpid(), "since": self.since}) + "\n").encode(), 0)
        except OSError as err:
            self.release()
            reason = err.strerror or str(err)
            raise ConfigError(self.key, str(self.run_dir), f"a folder rlrun can write and lock ({reason})") from err

    def release(self) -> None:
        """Let the folder go (its files, the lock file included, stay); harmless when not held."""
        with _held_guard:
            if self._fd is None:
                return
            _held.pop(self._folder, None)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = self._folder = None

    def _in_use(self, why: str) -> RunFolderInUse:
        return RunFolderInUse(self.key, str(self.run_dir), f"a run folder no other rlrun process is using ({why})")


def _describe_holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it; the file may be empty (the holder is between
    locking and writing) or not ours at all; what it holds must not break the one-line message."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode())
        pid, since = int(record["pid"]), datetime.strptime(record["since"], _TIME_FORMAT).strftime(_TIME_FORMAT)
    except (OSError, ValueError, TypeError, KeyError):
        return "another process holds it"
    return f"process {pid} holds it since {since}"


def _forget_in_child() -> None:
    """A forked child (an env worker, say) must not keep its parent's folders locked after the
    parent dies: close its copies of the descriptors, without unlocking, which would free the parent's."""
    global _held_guard
    _held_guard = threading.Lock()  # another thread may have held it at the moment of the fork
    for lock in _held.values():
        os.close(lock._fd)
        lock._fd = lock._folder = None
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)
