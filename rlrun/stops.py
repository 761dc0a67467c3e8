"""How a run ends before its budget: diverged, or stopped by a signal after saving. Torch-free, so
the command line can name them before the trainer is imported."""

from __future__ import annotations


class Diverged(Exception):
    """A NaN or infinite loss or parameter: the run stops and saves nothing more."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM: the run saved a checkpoint and stopped before its budget. Like
    KeyboardInterrupt, not an Exception, so a sweep stops rather than moving to its next job."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
