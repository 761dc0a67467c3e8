"""Resuming: a run killed with SIGKILL continues from its newest checkpoint to the same curves as a
run never interrupted; SIGINT saves and stops; a changed algorithm is refused."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlrun import checkpoint, runner
from rlrun.algos.reinforce import Reinforce
from rlrun.config import ConfigError
from tests.conftest import make_config, read_scalars, run_cli

# lr_anneal_steps fixed: by default it follows total_timesteps, which the killed run sets far away
REINFORCE = ["algo=reinforce", "algo.lr_anneal_steps=2000", "eval.every=500", "eval.episodes=2", "checkpoint.every=500",
             "log.progress=none"]
PPO = ["algo=ppo", "algo.num_envs=4", "algo.T=32", "algo.minibatch_size=64", "algo.lr_anneal_steps=null", *REINFORCE[2:]]


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
    assert not (run_dir / ".hydra").exists()  # the refused command's config is not left behind


def test_sigint_saves_a_checkpoint_after_the_iteration_and_stops(tmp_path, monkeypatch):
    original, steps = Reinforce.iterate, []
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when started in the background by `&`

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
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C acts as it did before the run again


def test_resume_alone_continues_with_the_runs_own_algo_env_budget_and_intervals(tmp_path):
    run_dir = tmp_path / "run"
    made = ["algo=actor_critic", "env=pendulum", "total_timesteps=600", "checkpoint.every=200", "checkpoint.keep=5",
            "eval.every=0", "eval.episodes=1", "log.progress=none", f"hydra.run.dir={run_dir}"]
    run_cli(*made, cwd=tmp_path)
    # what a kill right after the checkpoint at 400 leaves: no final checkpoint, model or summary
    for path in [run_dir / checkpoint.CHECKPOINT_DIR / "step_000000000600.pt", run_dir / "summary.json",
                 run_dir / checkpoint.MODEL_FILE]:
        path.unlink()
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert "resuming from" in proc.stdout and "step_000000000400.pt" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] == 600  # its own budget, not the default 100000
    stored = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert (stored.algo.name, stored.env.name, stored.checkpoint.every) == ("actor_critic", "pendulum", 200)
    assert "algo=actor_critic" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # the run's own command


def test_resume_may_raise_the_budget_and_refuses_other_keys(tmp_path):
    run_cli("algo.lr=0.01", "total_timesteps=300", "eval.episodes=1", "log.progress=none", cwd=tmp_path)
    (run_dir,) = (tmp_path / "outputs").glob("*/*")  # <time>_reinforce_cartpole_algo.lr=0.01,total_timesteps=300
    run_cli(f"resume={run_dir}", "total_timesteps=600", cwd=tmp_path)  # its `=` and `,` taken as typed
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] >= 600
    before = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
    gamma = OmegaConf.load(run_dir / ".hydra" / "config.yaml").algo.gamma
    proc = run_cli(f"resume={run_dir}", "algo.gamma=0.5", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"algo.gamma=0.5 is not allowed: {gamma}, as the run in" in proc.stderr
    assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == before  # every file as it was


def test_a_run_killed_before_its_first_checkpoint_starts_again_with_its_own_config(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = make_config("algo=fqi", "total_timesteps=400", "algo.learning_starts=100", "eval.episodes=1",
                      "log.progress=none")
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert "holds no checkpoint yet: training it again from step 0 with its own config" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= 400 and OmegaConf.load(run_dir / ".hydra" / "config.yaml").algo.name == "fqi"


def test_resume_of_a_folder_rlrun_did_not_make_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli(f"resume={tmp_path / 'empty'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        (
            f"rlrun: error: resume='{tmp_path / 'empty'}' is not allowed: a run folder rlrun made "
            "(with .hydra/config.yaml or checkpoints/)"
        )
    ]
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())  # the user's folder stays


def test_resume_of_a_folder_above_runs_is_refused_not_taken_for_one_of_them(tmp_path):
    """A sweep's folder holds runs in folders below it; resume= of the sweep folder must not train one
    of their configs in the sweep folder itself."""
    below = tmp_path / "sweep" / "seed=0" / checkpoint.CHECKPOINT_DIR
    below.mkdir(parents=True)
    (below / "step_000000000100.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=re.escape("a run folder rlrun made (with .hydra/config.yaml or checkpoints/)")):
        checkpoint.stored_config(tmp_path / "sweep", None)


def test_a_key_that_follows_the_budget_may_change_with_it_on_resume(tmp_path):
    """ppo's lr_anneal_steps is ${total_timesteps}: raising the budget on resume is allowed and
    stretches the annealing; setting it to another number is still a change of what is trained."""
    saved = OmegaConf.to_container(make_config("algo=ppo", "total_timesteps=512"), resolve=True)
    checkpoint.check_same_run(saved, make_config("algo=ppo", "total_timesteps=1024"), tmp_path)
    with pytest.raises(ConfigError, match=re.escape("algo.lr_anneal_steps=300 is not allowed: 512, as the run in")):
        checkpoint.check_same_run(saved, make_config("algo=ppo", "total_timesteps=1024", "algo.lr_anneal_steps=300"),
                                  tmp_path)
