"""What third-party libraries print: each distinct warning once, and no file of theirs outside the run folder.

`quiet_third_party()` is meant for the start of every process that builds envs: a run, each job of a
sweep (in whatever process its launcher runs it), rlrun-eval and rlrun-collect.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType


class ShowOnce:
    """A `warnings.showwarning` that passes each distinct (category, text) on once per process.

    Python's own 'once' and 'default' bookkeeping is cleared whenever any code changes the warning
    filters (every `warnings.catch_warnings()` does), so the same warning would come back."""

    def __init__(self, show: Callable[..., None]):
        self.show = show
        self.seen: set[tuple[type[Warning], str]] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        key = (category, str(message))
        if key not in self.seen:
            self.seen.add(key)
            self.show(message, category, filename, lineno, file, line)


def quiet_third_party() -> None:
    """Show each distinct warning once (64 envs built alike warn 64 times alike). MuJoCo's warnings go
    the same way instead of through its own handler, which prints every one and appends it to
    MUJOCO_LOG.TXT in the working directory: at once if MuJoCo is imported already, otherwise as soon
    as something imports it (importing it here would cost every run 0.1 s). Calling this again
    changes nothing."""
    if not isinstance(warnings.showwarning, ShowOnce):
        warnings.showwarning = ShowOnce(warnings.showwarning)
    if "mujoco" in sys.modules:
        set_mujoco_warning(sys.modules["mujoco"])
    elif not any(isinstance(finder, AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, AfterImport("mujoco", set_mujoco_warning))


def set_mujoco_warning(mujoco) -> None:
    if hasattr(mujoco, "set_mju_user_warning"):  # a broken install is reported where a MuJoCo env is built
        mujoco.set_mju_user_warning(mujoco_warning)


class AfterImport(importlib.abc.MetaPathFinder):
    """Calls `then(module)` right after the first import of the module `name`, wherever it happens."""

    def __init__(self, name: str, then: Callable[[ModuleType], None]):
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once, and the other finders find the module itself
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_then(module: ModuleType) -> None:
                exec_module(module)
                self.then(module)

            spec.loader.exec_module = exec_then
        return spec


def mujoco_warning(message: str) -> None:
    """MuJoCo's warning callback: a Python warning, attributed to the Python line that called MuJoCo."""
    warnings.warn(f"MuJoCo: {message.strip()}", RuntimeWarning, stacklevel=2)
