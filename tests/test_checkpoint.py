"""Checkpoint files: atomic writes, safe loading, the NaN stop, an unwritable output folder."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rlrun import checkpoint, evaluate, runner
from rlrun.algos.reinforce import Reinforce
from rlrun.build import build
from rlrun.config import ConfigError, with_added_keys
from tests.conftest import make_config, run_cli

SMALL = ["eval.every=0", "eval.episodes=1", "log.progress=none"]

KILLED_DURING_SAVE = """
import os, signal, sys, torch
from pathlib import Path
from rlrun import checkpoint

run_dir = Path(sys.argv[1])
checkpoint.save_checkpoint(run_dir, 100, {"weights": torch.zeros(3)}, keep=2)

def half_written_then_killed(obj, f):
    f.write(b"PK\\x03\\x04 the first bytes of a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = half_written_then_killed
checkpoint.save_checkpoint(run_dir, 200, {"weights": torch.ones(3)}, keep=2)
"""


def test_a_kill_during_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_DURING_SAVE, str(tmp_path)], check=False, capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    folder = tmp_path / checkpoint.CHECKPOINT_DIR
    assert (folder / "step_000000000200.pt.tmp").exists()  # the torn write, never under a checkpoint's name
    latest = checkpoint.latest_checkpoint(tmp_path)
    assert latest.name == "step_000000000100.pt"
    assert torch.equal(checkpoint.safe_load(latest)["weights"], torch.zeros(3))
    checkpoint.save_checkpoint(tmp_path, 300, {}, keep=2)  # the next save clears the torn file away
    assert sorted(p.name for p in folder.iterdir()) == ["step_000000000100.pt", "step_000000000300.pt"]


class CreatesAFile:
    """A pickle that creates `target` when it is loaded with plain `pickle`."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


def test_the_crafted_pickle_would_run_code_with_plain_pickle(tmp_path):
    pickle.loads(pickle.dumps(CreatesAFile(tmp_path / "created")))
    assert (tmp_path / "created").exists()  # so the refusals below are refusals of something real


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_crafted_pickle_is_refused_by_rlrun_eval_and_runs_nothing(tmp_path, capsys, writer):
    target, path = tmp_path / "pwned", tmp_path / "step_000000000001.pt"
    payload = {"step": 1, "algo": CreatesAFile(target)}
    with open(path, "wb") as f:
        torch.save(payload, f) if writer == "torch.save" else pickle.dump(payload, f)
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([str(path), "episodes=1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlrun-eval: error: checkpoint=") and "refused" in err[0]
    assert not target.exists()


def test_resume_from_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    (tmp_path / checkpoint.CHECKPOINT_DIR).mkdir()
    torch.save({"step": 5, "algo": CreatesAFile(target)}, tmp_path / checkpoint.CHECKPOINT_DIR / "step_000000000005.pt")
    with pytest.raises(ConfigError, match="refused to load it"):
        runner.train(make_config("total_timesteps=200", *SMALL), tmp_path)
    assert not target.exists() and not list(tmp_path.glob("events.out.tfevents.*"))


def poison(kind: str, on_call: int):
    """Reinforce.iterate, with a NaN loss or NaN parameters from its `on_call`-th call on."""
    original, steps = Reinforce.iterate, []

    def iterate(self, step):
        n, metrics = original(self, step)
        steps.append(n)
        if len(steps) == on_call:
            if kind == "loss":
                metrics["losses/policy_loss"] = float("nan")
            else:
                with torch.no_grad():
                    next(self.policy.parameters()).fill_(float("inf"))
        return n, metrics

    return iterate, steps


@pytest.mark.parametrize("kind,named", [("loss", "losses/policy_loss=nan"), ("parameter", "parameters of policy")])
def test_a_non_finite_loss_or_parameter_stops_the_run_keeping_the_last_good_checkpoint(
    tmp_path, monkeypatch, kind, named
):
    iterate, steps = poison(kind, on_call=3)
    monkeypatch.setattr(Reinforce, "iterate", iterate)
    cfg = make_config("total_timesteps=100000", "checkpoint.every=1", "checkpoint.keep=5", *SMALL)
    with pytest.raises(runner.Diverged) as err:
        runner.train(cfg, tmp_path)
    good = sum(steps[:2])
    assert f"diverged at step {sum(steps)}: {named} not finite" in str(err.value)
    assert f"step_{good:012d}.pt" in str(err.value)
    assert checkpoint.latest_checkpoint(tmp_path).name == f"step_{good:012d}.pt"  # the broken state is not saved
    assert not (tmp_path / checkpoint.MODEL_FILE).exists() and not (tmp_path / runner.SUMMARY_FILE).exists()


def test_an_output_folder_that_cannot_be_written_is_refused_before_training(tmp_cwd):
    (tmp_cwd / "a_file").write_text("not a folder")
    proc = run_cli("hydra.run.dir=a_file/run", "total_timesteps=100", cwd=tmp_cwd, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "rlrun: error: hydra.run.dir='a_file/run' is not allowed: a folder rlrun can write to (Not a directory)"
    ]



def saved_model(run_dir: Path) -> Path:
    """A model file as a run writes it, of an untrained reinforce policy (built in well under a second)."""
    cfg = make_config("total_timesteps=200", *SMALL)
    run_dir.mkdir(exist_ok=True)
    return checkpoint.save_model(run_dir / checkpoint.MODEL_FILE, build(cfg).networks(), OmegaConf.to_container(cfg), 7)


FOREIGN = {
    "zero-byte checkpoint": ("checkpoints/step_000000000001.pt", b"", "a readable rlrun checkpoint (the file is empty"),
    "zero-byte model file": ("model.pt", b"", "a readable rlrun checkpoint (the file is empty"),
    "torch file as a checkpoint": ("checkpoints/step_000000000001.pt", {"w": torch.zeros(2)}, "a checkpoint written by"),
    "torch file as a model file": ("model.pt", [1, 2], "a model file written by rlrun (this file is not one)"),
}


@pytest.mark.parametrize("case", FOREIGN, ids=list(FOREIGN))
def test_a_damaged_or_foreign_file_is_one_line_and_exit_2_for_rlrun_eval(tmp_path, capsys, case):
    name, content, allowed = FOREIGN[case]
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([str(path), "episodes=1"])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"rlrun-eval: error: checkpoint='{path}' is not allowed: {allowed}")


def test_rlrun_eval_of_a_model_file_evaluates_the_networks_it_holds(tmp_path, capsys):
    path = saved_model(tmp_path)
    evaluate.main([str(path), "episodes=2"])
    out = capsys.readouterr().out
    assert out.startswith("eval return ") and out.strip().endswith(f"| step 7 | {path}")


def test_resume_from_a_zero_byte_checkpoint_is_one_config_error(tmp_path):
    (tmp_path / checkpoint.CHECKPOINT_DIR).mkdir()
    (tmp_path / checkpoint.CHECKPOINT_DIR / "step_000000000005.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"a readable rlrun checkpoint \(the file is empty or cut short\)"):
        runner.train(make_config("total_timesteps=200", *SMALL), tmp_path)


def test_resume_of_a_folder_whose_only_checkpoint_is_foreign_is_one_config_error(tmp_path):
    """Without .hydra/config.yaml, resume reads the config from the newest checkpoint, which must be rlrun's."""
    (tmp_path / checkpoint.CHECKPOINT_DIR).mkdir()
    torch.save({"w": torch.zeros(2)}, tmp_path / checkpoint.CHECKPOINT_DIR / "step_000000000001.pt")
    with pytest.raises(ConfigError, match="a checkpoint written by rlrun \\(this file is not one\\)"):
        checkpoint.stored_config(tmp_path, None)


def test_a_run_made_before_an_algorithm_key_existed_resumes_and_loads_with_its_default(tmp_path):
    """algo.n_step came after runs that are still on disk: they take its default, 1, which is what they did."""
    cfg = make_config("algo=fqi", "algo.n_step=1")  # as CartPole's pair settings were then
    saved = OmegaConf.to_container(cfg, resolve=True)
    del saved["algo"]["n_step"]
    assert with_added_keys(OmegaConf.create(saved)).algo.n_step == 1
    checkpoint.check_same_run(saved, cfg, tmp_path)  # the same run
    with pytest.raises(ConfigError, match="algo.n_step=3 is not allowed: 1, as the run"):
        checkpoint.check_same_run(saved, make_config("algo=fqi", "algo.n_step=3"), tmp_path)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    stored = checkpoint.stored_config(tmp_path, (tmp_path / ".hydra" / "config.yaml").read_bytes())
    assert stored.algo.n_step == 1 and stored.algo.K == cfg.algo.K
