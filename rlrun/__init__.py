"""rlrun: a command-line experiment runner for reinforcement learning (`rlrun algo=reinforce env=cartpole`)."""

import os as _os
import signal as _signal
import sys as _sys


def _stopped_while_starting(signum: int, frame) -> None:
    """The `rlrun` command stopped while Python imports it, before anything is written: one line,
    not silence (SIGTERM) or a traceback (Ctrl-C). `rlrun.cli.main` takes the signals over."""
    print(f"rlrun: stopped by {_signal.strsignal(signum)} while starting; nothing was written", file=_sys.stderr)
    _sys.exit(128 + signum)


if _sys.argv and _os.path.basename(_sys.argv[0]) == "rlrun":  # the command itself, not an import of the package
    for _signum in (_signal.SIGINT, _signal.SIGTERM):
        _signal.signal(_signum, _stopped_while_starting)
