"""One process per run folder: a second one is refused with one line naming the holder, and a
holder killed with SIGKILL leaves nothing that blocks the next run (tested with real processes)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlrun.config import ConfigError
from rlrun.lock import LOCK_FILE, RunFolderInUse, RunLock

# Takes the lock on argv[1], reports "locked <pid of a forked child or 0>" and holds it until stdin closes.
HOLDER = """
import os, sys, time
from rlrun.lock import RunLock
with RunLock(sys.argv[1]):
    child = 0
    if sys.argv[2] == "fork":
        ready, say_ready = os.pipe()
        child = os.fork()
        if child == 0:  # past os.fork, so past the at-fork handlers too
            os.write(say_ready, b"x")
            time.sleep(30)
            os._exit(0)
        os.read(ready, 1)
    print("locked", child, flush=True)
    sys.stdin.read()
"""


def start_holder(run_dir: Path, fork: bool = False) -> tuple[subprocess.Popen, int]:
    """A real second process holding `run_dir`; returns it and the pid of its forked child (0: none)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir), "fork" if fork else "plain"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    word, child = proc.stdout.readline().split()
    assert word == "locked"
    return proc, int(child)


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    holder, _ = start_holder(tmp_path)
    try:
        with pytest.raises(RunFolderInUse) as refused:
            RunLock(tmp_path, key="hydra.run.dir").acquire()
        message = str(refused.value)
        assert message.startswith(f"hydra.run.dir='{tmp_path}' is not allowed: a run folder no other rlrun process")
        assert f"process {holder.pid} holds it since " in message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_killed_with_sigkill_does_not_block_the_next_run(tmp_path):
    holder, _ = start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid  # the stale file is still there
    start = time.perf_counter()
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert time.perf_counter() - start < 0.5


def test_a_forked_child_does_not_keep_a_killed_holders_lock(tmp_path):
    holder, child = start_holder(tmp_path, fork=True)
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        os.kill(child, 0)  # the forked child, which inherited the lock's descriptor, is still alive
        with RunLock(tmp_path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_holder_that_ends_normally_frees_the_folder_and_its_files_stay(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_000000000100.pt").write_bytes(b"state")
    holder, _ = start_holder(tmp_path)
    holder.stdin.close()
    assert holder.wait(timeout=5) == 0
    with RunLock(tmp_path):
        pass
    assert (tmp_path / "checkpoints" / "step_000000000100.pt").read_bytes() == b"state"
    assert (tmp_path / LOCK_FILE).is_file()


def test_the_same_process_taking_a_folder_twice_is_told_so(tmp_path):
    held_twice = pytest.raises(RunFolderInUse, match=f"this process, {os.getpid()}, already holds it")
    with RunLock(tmp_path, key="resume"), held_twice:
        RunLock(tmp_path, key="resume").acquire()
    with RunLock(tmp_path):
        pass


def test_the_lock_is_released_when_the_run_raises(tmp_path):
    with pytest.raises(RuntimeError), RunLock(tmp_path):
        raise RuntimeError("the run failed")
    with RunLock(tmp_path):
        pass


@pytest.mark.parametrize("content", [b"", b"\xff\x00not json", b"[1, 2]", b'{"pid": 7, "since": "now\\nand then"}'])
def test_an_unreadable_holder_record_still_gives_one_line(tmp_path, content):
    (tmp_path / LOCK_FILE).write_bytes(content)
    with open(tmp_path / LOCK_FILE, "rb") as other:  # a second open file: flock treats it as another holder
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunFolderInUse, match=r"\(another process holds it; ") as refused:
            RunLock(tmp_path).acquire()
    assert "\n" not in str(refused.value)


def test_a_folder_that_cannot_hold_a_lock_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^hydra.run.dir='.*' is not allowed: a folder rlrun can write and lock \("):
        RunLock(tmp_path / "file" / "run").acquire()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_line(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=r"a folder rlrun can write and lock \(Permission denied\)$"):
            RunLock(tmp_path).acquire()
    finally:
        tmp_path.chmod(0o700)


def test_a_folder_is_created_when_missing(tmp_path):
    with RunLock(tmp_path / "seed=1"):
        assert (tmp_path / "seed=1" / LOCK_FILE).is_file()


def test_two_rlrun_commands_on_one_run_folder_the_second_is_refused_and_a_killed_first_resumes(tmp_path):
    """seed=0 and seed=1 aimed at one hydra.run.dir: the second rlrun is one line, exit 2, and leaves
    the first's files alone; once the first is killed with SIGKILL its folder resumes."""
    from tests.conftest import run_cli

    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "rlrun.cli", "seed=0", "total_timesteps=10000000", "log.progress=none",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        # the event file comes after Hydra has written .hydra/ (its config.yaml exists before it is filled)
        while not list(run_dir.glob("events.out.tfevents.*")):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never started"
            time.sleep(0.1)
        config_before = (run_dir / ".hydra" / "config.yaml").read_bytes()
        second = run_cli("seed=1", "total_timesteps=1000", f"hydra.run.dir={run_dir}", cwd=tmp_path, check=False)
        assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1
        assert f"a run folder no other rlrun process is using (process {first.pid} holds it" in second.stderr
        assert (run_dir / ".hydra" / "config.yaml").read_bytes() == config_before
    finally:
        first.kill()
        first.wait()
    resumed = run_cli(f"resume={run_dir}", "total_timesteps=1000", "eval.episodes=1", cwd=tmp_path)
    assert resumed.returncode == 0 and (run_dir / "summary.json").is_file()
