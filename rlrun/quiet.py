"""What third-party libraries print: each distinct warning once, and no file of theirs outside the run folder.

`quiet_third_party()` is meant for the start of every process that builds envs: a run, each job of a
sweep (in whatever process its launcher runs it), rlrun-eval and rlrun-collect.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable


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
    MUJOCO_LOG.TXT in the working directory. MuJoCo is imported only where it is installed.
    Calling this again changes nothing."""
    if not isinstance(warnings.showwarning, ShowOnce):
        warnings.showwarning = ShowOnce(warnings.showwarning)
    if importlib.util.find_spec("mujoco") is None:
        return
    try:
        import mujoco
    except ImportError:  # a broken MuJoCo install is reported where a MuJoCo env is built, not in every run
        return
    mujoco.set_mju_user_warning(mujoco_warning)


def mujoco_warning(message: str) -> None:
    """MuJoCo's warning callback: a Python warning, attributed to the Python line that called MuJoCo."""
    warnings.warn(f"MuJoCo: {message.strip()}", RuntimeWarning, stacklevel=2)
