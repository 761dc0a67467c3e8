"""Sweeps: one folder per setting with the seeds beneath it, a failing job that leaves the others
running and is reported at the end, the parallel launcher, and several seeds in one job."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlrun import cli, sweep  # noqa: F401  cli registers the resolver of hydra.run.dir
from rlrun.config import config_dir
from tests.conftest import TINY, make_config, run_cli


def only_sweep_dir(cwd: Path) -> Path:
    sweeps = list((cwd / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def test_parallel_sweep_with_a_failing_setting_finishes_the_others_and_reports_the_failures(tmp_cwd):
    proc = run_cli("-m", "launcher=parallel", "algo.lr=-1,0.01", "seed=0,1", *TINY, cwd=tmp_cwd, check=False)
    sweep_dir = only_sweep_dir(tmp_cwd)
    # one folder per setting, named by what the sweep varies; the seeds side by side beneath it
    assert sorted(str(p.relative_to(sweep_dir)) for p in sweep_dir.glob("*/seed=*")) == [
        "algo.lr=-1/seed=0",
        "algo.lr=-1/seed=1",
        "algo.lr=0.01/seed=0",
        "algo.lr=0.01/seed=1",
    ]
    for seed in (0, 1):  # the two good jobs ran to the end in the launcher's worker processes
        run_dir = sweep_dir / "algo.lr=0.01" / f"seed={seed}"
        assert json.loads((run_dir / "summary.json").read_text())["env_steps"] >= 600
        # each run states its session only; an experiment summary per run would make TensorBoard's
        # HPARAMS table take one run's keys for all runs of the sweep
        events = EventAccumulator(str(run_dir))  # events in the run folder itself
        events.Reload()
        assert set(events.PluginTagToContent("hparams")) == {
            "_hparams_/session_start_info",
            "_hparams_/session_end_info",
        }
    assert proc.returncode == 1
    report = proc.stderr[proc.stderr.index("rlrun: 2 job(s) of the sweep") :]
    for seed in (0, 1):
        failed = json.loads((sweep_dir / "algo.lr=-1" / f"seed={seed}" / sweep.FAILED_FILE).read_text())
        assert Path(failed["log"]).is_file() and "algo.lr=-1 is not allowed" in Path(failed["log"]).read_text()
        assert " ".join(failed["overrides"]) in report and failed["log"] in report
    assert "Traceback" not in proc.stderr
    assert "rlrun: error: algo.lr=-1 is not allowed: a number > 0" in report


@pytest.mark.parametrize(
    "overrides, subdir",
    [
        (["seed=3"], "reinforce_cartpole/seed=3"),  # nothing but the seed swept: named after algo and env
        (["algo.lr=0.1", "seed=3"], "algo.lr=0.1/seed=3"),
        (["launcher=parallel", "algo=actor_critic", "seed=1"], "algo=actor_critic/seed=1"),
        (["seeds=2", "seed=3"], "reinforce_cartpole/seeds=3-4"),  # its runs: seeds=3-4/seed=3, seeds=3-4/seed=4
        # a path in a value: one folder that needs no quoting
        (["algo=bc", "algo.dataset=data/a b.npz"], "algo.dataset=data_a_b.npz,algo=bc/seed=0"),
    ],
)
def test_sweep_job_folder_is_its_setting_with_the_seed_beneath(overrides, subdir):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    assert OmegaConf.select(cfg, "hydra.sweep.subdir") == subdir


@pytest.mark.parametrize(
    "overrides, name",
    [
        ([], "reinforce_cartpole"),
        (["algo=ppo", "env=pendulum", "seed=2", "eval.every=100", "log.progress=none", "device=cpu"], "ppo_pendulum"),
        (["experiment=ppo_pendulum"], "ppo_pendulum_experiment=ppo_pendulum"),
        (["algo=ppo", "env=pendulum", "algo.lr=0.01", "total_timesteps=5000"],
         "ppo_pendulum_algo.lr=0.01,total_timesteps=5000"),
        (["env=gym", "env.id=ALE/Pong-v5"], "reinforce_ALE_Pong-v5_env=gym"),
        ([f"algo.lr={'1' * 200}"], None),
    ],
)
def test_a_run_folder_is_named_by_algo_env_and_the_keys_that_change_what_is_trained(overrides, name):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    folder = Path(OmegaConf.select(cfg, "hydra.run.dir"))
    assert folder.parent.parent == Path("outputs") and re.fullmatch(r"\d\d-\d\d-\d\d_[\w.,=+-]+", folder.name)
    if name is None:  # too long: cut, and a hash of the whole keeps it apart from other long names
        assert len(folder.name) == len("00-00-00_") + sweep.NAME_MAX
        assert folder.name[9:].startswith("reinforce_cartpole_algo.lr=111") and re.search(r"1-[0-9a-f]{8}$", folder.name)
    else:
        assert folder.name[len("00-00-00_") :] == name


def test_several_seeds_in_one_job_run_side_by_side_and_return_their_mean(tmp_path):
    cfg = make_config("seeds=2", "seed=3", *TINY)
    mean = sweep.train_seeds(cfg, tmp_path)
    finals = [json.loads((tmp_path / f"seed={s}" / "summary.json").read_text())["eval_return_mean"] for s in (3, 4)]
    assert mean == pytest.approx(sum(finals) / 2)
    assert make_config().seeds == 1
    for s in (3, 4):
        saved = (tmp_path / f"seed={s}" / ".hydra" / "config.yaml").read_text()
        assert f"seed: {s}\n" in saved and "seeds: 1\n" in saved
