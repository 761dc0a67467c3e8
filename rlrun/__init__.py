"""rlrun: a command-line experiment runner for reinforcement learning (`rlrun algo=reinforce env=cartpole`)."""

import gc as _gc
import os as _os
import signal as _signal
import sys as _sys

_gc_paused = False


def pause_gc() -> None:
    """Pause Python's cyclic garbage collector until `imports_done()`: the `rlrun` command's start-up.

    Importing torch creates about a million objects that live as long as the process. With the
    collector running, the import itself spends about 0.17 s collecting, and every full collection
    after it walks them all again (about 0.1 s each, several in a short run). Code that imports
    rlrun as a library never pauses it."""
    global _gc_paused
    if _gc.isenabled():
        _gc.disable()
        _gc_paused = True


def imports_done() -> None:
    """What start-up created stays for good: move it out of the collector's sight (`gc.freeze`) and
    collect as usual from here on. Called once torch and the runner are imported, or when a sweep's
    own process starts (it may run no job itself)."""
    if _gc_paused:
        _gc.freeze()
    resume_gc()


def resume_gc() -> None:
    """The collector back on, if `pause_gc` paused it."""
    global _gc_paused
    if _gc_paused:
        _gc.enable()
        _gc_paused = False


def _stopped_while_starting(signum: int, frame) -> None:
    """The `rlrun` command stopped while Python imports it, before anything is written: one line,
    not silence (SIGTERM) or a traceback (Ctrl-C). `rlrun.cli.main` takes the signals over."""
    print(f"rlrun: stopped by {_signal.strsignal(signum)} while starting; nothing was written", file=_sys.stderr)
    _sys.exit(128 + signum)


if _sys.argv and _os.path.basename(_sys.argv[0]) == "rlrun":  # the command itself, not an import of the package
    for _signum in (_signal.SIGINT, _signal.SIGTERM):
        _signal.signal(_signum, _stopped_while_starting)
    pause_gc()
