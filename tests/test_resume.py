"""Resuming: a run killed with SIGKILL continues from its newest checkpoint to the same curves as a
run never interrupted; SIGINT saves and stops; a changed algorithm is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlrun import checkpoint, runner
from rlrun.algos.reinforce import Reinforce
from tests.conftest import make_config, read_scalars, run_cli

REINFORCE = ["algo=reinforce", "eval.every=500", "eval.episodes=2", "checkpoint.every=500", "log.progress=none"]
# lr_anneal_steps fixed: by default it follows total_timesteps, which the killed run sets far away
PPO = ["algo=ppo", "algo.num_envs=4", "algo.T=32", "algo.minibatch_size=64", "algo.lr_anneal_steps=null", *REINFORCE[1:]]


def kill_after_first_checkpoint(overrides: list[str], run_dir: Path) -> Path:
    """Start `rlrun` with a budget it will not reach, SIGKILL it once it has saved a checkpoint."""
    cmd = [sys.executable, "-m", "rlrun.cli", *overrides, "total_timesteps=1000000000", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while checkpoint.latest_checkpoint(run_dir) is None:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint within two minutes"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return checkpoint.latest_checkpoint(run_dir)


def assert_same_run(resumed: Path, straight: Path) -> None:
    """Same env steps, final eval and scalars at the same steps (none missing, none twice)."""
    a, b = read_scalars(straight), read_scalars(resumed)
    assert [s for s, _ in a.pop("charts/SPS")] == [s for s, _ in b.pop("charts/SPS")]  # SPS is wall clock
    assert a == b
    summary_a = json.loads((straight / runner.SUMMARY_FILE).read_text())
    summary_b = json.loads((resumed / runner.SUMMARY_FILE).read_text())
    assert summary_a["env_steps"] == summary_b["env_steps"]
    assert summary_a["eval_return_mean"] == summary_b["eval_return_mean"]


def test_reinforce_killed_and_resumed_with_resume_equals_an_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    saved_at = checkpoint.safe_load(kill_after_first_checkpoint(REINFORCE, killed))["step"]
    run_cli(*REINFORCE, f"resume={killed}", "total_timesteps=2000", cwd=tmp_path)
    straight = tmp_path / "straight"
    runner.train(make_config(*REINFORCE, "total_timesteps=2000"), straight)
    assert saved_at < json.loads((killed / runner.SUMMARY_FILE).read_text())["env_steps"]
    assert_same_run(killed, straight)


def test_ppo_killed_and_run_again_into_its_folder_equals_an_uninterrupted_run(tmp_path):
    """PPO's envs carry episodes across iterations: their state is in the checkpoint too."""
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(PPO, killed)
    runner.train(make_config(*PPO, "total_timesteps=1024"), killed)
    straight = tmp_path / "straight"
    runner.train(make_config(*PPO, "total_timesteps=1024"), straight)
    assert_same_run(killed, straight)


def test_resume_with_another_algorithm_is_refused_and_the_run_is_kept(tmp_path):
    run_dir = tmp_path / "run"
    runner.train(make_config("total_timesteps=300", "eval.episodes=1", "log.progress=none"), run_dir)
    before = sorted(p.name for p in (run_dir / checkpoint.CHECKPOINT_DIR).iterdir())
    proc = run_cli(f"resume={run_dir}", "algo=actor_critic", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlrun: error: algo.name='actor_critic' is not allowed: 'reinforce'")
    assert sorted(p.name for p in (run_dir / checkpoint.CHECKPOINT_DIR).iterdir()) == before
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").algo.name == "reinforce"  # put back after Hydra wrote it


def test_sigint_saves_a_checkpoint_after_the_iteration_and_stops(tmp_path, monkeypatch):
    original, steps = Reinforce.iterate, []

    def iterate(self, step):
        n, metrics = original(self, step)
        steps.append(n)
        if len(steps) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the run
        return n, metrics

    monkeypatch.setattr(Reinforce, "iterate", iterate)
    cfg = make_config(
        "total_timesteps=100000", "checkpoint.every=0", "eval.every=0", "eval.episodes=1", "log.progress=none"
    )
    with pytest.raises(runner.Interrupted) as err:
        runner.train(cfg, tmp_path)
    assert err.value.signum == signal.SIGINT and f"at step {sum(steps)}" in str(err.value)
    assert checkpoint.latest_checkpoint(tmp_path).name == f"step_{sum(steps):012d}.pt"
    assert not (tmp_path / runner.SUMMARY_FILE).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C acts as usual again
