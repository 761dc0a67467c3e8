"""Values that pass the type rules but cannot run, a full disk, and stop requests at any moment:
each ends in one line, and nothing already written is lost (issue 15 items 2, 6 and 10)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlrun import checkpoint, memory, runner
from rlrun.algos import specs
from rlrun.build import build
from rlrun.config import ConfigError
from tests.conftest import make_config

BEYOND_THE_BOUNDS = [
    ("seed=4294967296", "seed=4294967296 is not allowed: an integer in [0, 4294967295]"),
    ("seed=4294967295 seeds=2", "seeds=2 is not allowed: an integer in [1, 1] with seed=4294967295"),
    ("algo.N=1000000000000", "algo.N=1000000000000 is not allowed: an integer in [1, 100000]"),
    ("eval.episodes=1000000000", "eval.episodes=1000000000 is not allowed: an integer in [1, 100000]"),
    ("algo=fqi algo.N=1000000000000", "algo.N=1000000000000 is not allowed: an integer in [1, 1000000000]"),
    (
        "algo=fqi algo.buffer_size=1000000000000",
        "algo.buffer_size=1000000000000 is not allowed: an integer in [1, 1000000000]",
    ),
    ("algo=qtopt algo.cem_samples=100000000", "algo.cem_samples=100000000 is not allowed: an integer in [1, 10000]"),
    (
        "algo.hidden_sizes=[100000,100000]",
        "algo.hidden_sizes=[100000, 100000] is not allowed: a list of integers in [1, 65536], e.g. [64,64]",
    ),
]


@pytest.mark.parametrize("overrides,line", BEYOND_THE_BOUNDS, ids=[b[0] for b in BEYOND_THE_BOUNDS])
def test_values_beyond_any_sensible_bound_are_refused_before_the_env_is_built(overrides, line):
    with pytest.raises(ConfigError) as err:
        specs.validate(make_config(*overrides.split()))
    assert str(err.value) == line


# Each fits its rule's bound, and asks for more than the 64 MiB this test says the machine has.
TOO_BIG_FOR_MEMORY = [
    ("algo=fqi algo.buffer_size=10000000", "algo.buffer_size=10000000", "the replay buffer"),  # 45 bytes each
    ("algo=fqi algo.N=10000000 algo.num_envs=1", "algo.N=10000000", "one iteration's collection"),
    ("algo.hidden_sizes=[4096,4096]", "algo.hidden_sizes=[4096, 4096]", "a network's parameters"),
    ("env=pendulum algo=qtopt algo.cem_samples=10000", "algo.cem_samples=10000", "CEM's 6400000 (state, action) pairs"),
    ("algo=fqi algo.S=1000000", "algo.S=1000000", "an iteration's 1000000 minibatches of 64 transitions"),
    ("eval.episodes=10000", "eval.episodes=10000", "10000 episodes of up to 500 steps side by side"),
    ("algo.N=10000", "algo.N=10000", "10000 episodes of up to 500 steps side by side"),
]


@pytest.mark.parametrize("overrides,shown,what", TOO_BIG_FOR_MEMORY, ids=[t[0] for t in TOO_BIG_FOR_MEMORY])
def test_a_run_that_needs_more_memory_than_there_is_is_refused_naming_the_key(monkeypatch, overrides, shown, what):
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * 2**20)
    with pytest.raises(ConfigError) as err:
        build(make_config(*overrides.split()))
    message = str(err.value)
    assert message.startswith(f"{shown} is not allowed: a value that fits in this machine's memory (it needs about ")
    assert f"of it for {what}" in message and message.endswith("; 64.0 MiB available)")


def test_the_default_configs_fit_in_64_mib(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * 2**20)
    for algo in ("reinforce", "ppo", "fqi"):
        build(make_config(f"algo={algo}"))
    build(make_config("algo=qtopt", "env=pendulum"))


def test_an_update_that_overflows_float32_is_the_divergence_stop_not_a_crash(tmp_path):
    """Adam's step lr / (1 - beta1) overflows float32 at lr=1e38: torch raises before any NaN shows."""
    cfg = make_config("algo.lr=1e38", "total_timesteps=2000", "eval.every=0", "eval.episodes=1", "log.progress=none")
    with pytest.raises(runner.Diverged) as err:
        runner.train(cfg, tmp_path)
    assert str(err.value).startswith("training diverged at step 0: an update overflowed float32 (")
    assert str(err.value).endswith("; stopped without saving (no checkpoint was saved before it)")
    assert checkpoint.latest_checkpoint(tmp_path) is None and not (tmp_path / runner.SUMMARY_FILE).exists()


PATCHED_CLI = """
import errno, sys, time
from pathlib import Path
{patch}
from rlrun.cli import main
main()
"""


def patched_cli(patch: str, *args: str, cwd: Path, wait: bool = True):
    """`rlrun ARGS` in a process of its own with `patch` (Python) applied first."""
    command = [sys.executable, "-c", PATCHED_CLI.format(patch=textwrap.dedent(patch)), *args]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(Path(__file__).parent.parent)}
    if wait:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=120, check=False)
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(proc: subprocess.Popen, line: str) -> None:
    for printed in proc.stdout:
        if line in printed:
            return
    raise AssertionError(f"the process ended before printing {line!r}: {proc.stderr.read()}")


RUN = ["algo=reinforce", "total_timesteps=100000", "eval.every=0", "eval.episodes=1", "log.progress=none"]

LONG_THIRD_ITERATION = """
from rlrun import runner
from rlrun.algos.reinforce import Reinforce
runner.STOP_GRACE_S = 1.0
original, calls = Reinforce.iterate, []
def iterate(self, step):
    calls.append(step)
    if len(calls) == 3:
        print("a long iteration", flush=True)
        time.sleep(120)
    return original(self, step)
Reinforce.iterate = iterate
"""


def test_sigterm_in_a_long_iteration_stops_within_seconds_without_saving(tmp_path):
    proc = patched_cli(LONG_THIRD_ITERATION, *RUN, "checkpoint.every=1", "hydra.run.dir=run", cwd=tmp_path, wait=False)
    wait_for(proc, "a long iteration")
    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert time.monotonic() - asked < 4  # the grace period is 1 s here (5 s in a run)
    assert proc.returncode == 128 + signal.SIGTERM
    run_dir = tmp_path / "run"
    kept = checkpoint.latest_checkpoint(run_dir)  # the second iteration's: the third never ended
    expected = (
        f"rlrun: stopped by Terminated at step {int(kept.stem.split('_')[1])}: the iteration did not end within 1 s, "
        f"so nothing was saved (the last good checkpoint is {kept}); continue with: rlrun resume={run_dir}"
    )
    assert proc.stderr.read().splitlines() == [expected]
    assert len(list((run_dir / checkpoint.CHECKPOINT_DIR).iterdir())) == 2  # keep=2, and no .tmp


SLOW_BUILD = """
from rlrun import runner
def build(*args, **kwargs):
    print("building", flush=True)
    time.sleep(120)
runner.build = build
"""


def test_sigterm_before_the_training_loop_is_one_line_and_leaves_a_run_resume_continues(tmp_path):
    proc = patched_cli(SLOW_BUILD, *RUN, "hydra.run.dir=run", cwd=tmp_path, wait=False)
    wait_for(proc, "building")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    (line,) = proc.stderr.read().splitlines()
    assert line.startswith("rlrun: stopped by Terminated outside the training loop")
    assert line.endswith(f"continue with: rlrun resume={tmp_path / 'run'}")
    stored = (tmp_path / "run" / ".hydra" / "config.yaml").read_bytes()
    assert checkpoint.stored_config(tmp_path / "run", stored).algo.name == "reinforce"  # what resume= reads


SLOW_HYDRA_SETUP = """
import hydra.core.utils
def save_config(cfg, filename, output_dir):
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / filename).write_bytes(b"")
    print("saving", flush=True)
    time.sleep(120)
hydra.core.utils._save_config = save_config
"""


def test_sigterm_while_hydra_sets_the_run_up_leaves_the_users_folder_as_it_was(tmp_path):
    (tmp_path / "mine").mkdir()
    proc = patched_cli(SLOW_HYDRA_SETUP, *RUN, "hydra.run.dir=mine", cwd=tmp_path, wait=False)
    wait_for(proc, "saving")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert proc.stderr.read().splitlines() == [
        "rlrun: stopped by Terminated before the run began; its folder is left as it was"
    ]
    assert list((tmp_path / "mine").iterdir()) == []


DISK_FULL_AT_START = """
import hydra.core.utils
def save_config(cfg, filename, output_dir):
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / filename).write_bytes(b"")  # what a full disk leaves: the file, empty
    raise OSError(errno.ENOSPC, "No space left on device")
hydra.core.utils._save_config = save_config
"""


@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "the user's empty folder"])
def test_a_full_disk_at_the_start_is_one_line_and_leaves_no_empty_config(tmp_path, existing):
    if existing:
        (tmp_path / "run").mkdir()
    proc = patched_cli(DISK_FULL_AT_START, *RUN, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2
    expected = (
        "rlrun: error: hydra.run.dir='run' is not allowed: a folder on a disk with free space "
        "(No space left on device; the folder is left as it was)"
    )
    assert proc.stderr.splitlines() == [expected]
    assert list((tmp_path / "run").iterdir()) == [] if existing else not (tmp_path / "run").exists()


FULL_AFTER_THE_FIRST_CHECKPOINT = {
    "checkpoint": """
        import torch
        original, calls = torch.save, []
        def save(obj, f):
            calls.append(f)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(obj, f)
        torch.save = save
    """,
    "tensorboard": """
        from tensorboard.summary.writer import record_writer
        original = record_writer.RecordWriter.write
        def write(self, data):
            if list(Path("run/checkpoints").glob("step_*.pt")):
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(self, data)
        record_writer.RecordWriter.write = write
    """,
}


@pytest.mark.parametrize("failing", FULL_AFTER_THE_FIRST_CHECKPOINT)
def test_a_disk_that_fills_during_the_run_is_one_line_and_keeps_the_earlier_checkpoint(tmp_path, failing):
    patch = FULL_AFTER_THE_FIRST_CHECKPOINT[failing]
    proc = patched_cli(patch, *RUN, "checkpoint.every=500", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 1
    run_dir = tmp_path / "run"
    kept = checkpoint.latest_checkpoint(run_dir)
    expected = (
        "rlrun: error: hydra.run.dir='run' is not allowed: a folder on a disk with free space (No space left on "
        f"device; the last good checkpoint is {kept}); free some space and continue with: rlrun resume={run_dir}"
    )
    assert proc.stderr.splitlines() == [expected]
    assert [p.name for p in (run_dir / checkpoint.CHECKPOINT_DIR).iterdir()] == [kept.name]  # no torn .tmp
    assert checkpoint.safe_load(kept)["step"] == int(kept.stem.split("_")[1])
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").algo.name == "reinforce"
    assert not (run_dir / runner.SUMMARY_FILE).exists()


def test_a_full_disk_stops_a_sweep_instead_of_failing_each_job_in_turn(tmp_path):
    from rlrun import sweep

    def job():
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as err:
        sweep.isolated(job, tmp_path)
    assert err.value.errno == errno.ENOSPC and not (tmp_path / sweep.FAILED_FILE).exists()
