"""Sweeps: one folder per setting with the seeds beneath it, a failing job that leaves the others
running and is reported at the end, the parallel launcher, and several seeds in one job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlrun import sweep
from tests.conftest import TINY, make_config, run_cli


def only_sweep_dir(cwd: Path) -> Path:
    sweeps = list((cwd / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def test_failing_job_leaves_the_others_running_and_is_reported_with_overrides_and_log(tmp_cwd):
    proc = run_cli("-m", "algo.lr=-1,0.01", "seed=0,1", *TINY, cwd=tmp_cwd, check=False)
    sweep_dir = only_sweep_dir(tmp_cwd)
    # one folder per setting, named by what the sweep varies; the seeds side by side beneath it
    assert sorted(str(p.relative_to(sweep_dir)) for p in sweep_dir.glob("*/seed=*")) == [
        "algo.lr=-1/seed=0",
        "algo.lr=-1/seed=1",
        "algo.lr=0.01/seed=0",
        "algo.lr=0.01/seed=1",
    ]
    for seed in (0, 1):  # the jobs after the failed ones ran to the end
        assert (sweep_dir / "algo.lr=0.01" / f"seed={seed}" / "summary.json").is_file()
    assert proc.returncode == 1
    report = proc.stderr[proc.stderr.index("rlrun: 2 job(s) of the sweep") :]
    for seed in (0, 1):
        failed = json.loads((sweep_dir / "algo.lr=-1" / f"seed={seed}" / sweep.FAILED_FILE).read_text())
        assert Path(failed["log"]).is_file() and "algo.lr=-1 is not allowed" in Path(failed["log"]).read_text()
        assert " ".join(failed["overrides"]) in report and failed["log"] in report
    assert "Traceback" not in proc.stderr
    assert "rlrun: error: algo.lr=-1 is not allowed: a number > 0" in report


def test_parallel_launcher_runs_two_jobs_and_a_sweep_of_seeds_only_is_named_after_algo_and_env(tmp_cwd):
    run_cli("-m", "launcher=parallel", "seed=0,1", *TINY, cwd=tmp_cwd)
    sweep_dir = only_sweep_dir(tmp_cwd)
    for seed in (0, 1):
        run_dir = sweep_dir / "reinforce_cartpole" / f"seed={seed}"
        assert json.loads((run_dir / "summary.json").read_text())["env_steps"] >= 600
        # each run states its session only; an experiment summary per run would make TensorBoard's
        # HPARAMS table take one run's keys for all runs of the sweep
        events = EventAccumulator(str(run_dir / "tb"))
        events.Reload()
        assert set(events.PluginTagToContent("hparams")) == {
            "_hparams_/session_start_info",
            "_hparams_/session_end_info",
        }


def test_setting_folder_falls_back_when_nothing_but_the_seed_is_swept():
    assert sweep.setting_dirname("", "reinforce_cartpole") == "reinforce_cartpole"
    assert sweep.setting_dirname("algo=reinforce", "reinforce_cartpole") == "algo=reinforce"


def test_several_seeds_in_one_job_run_side_by_side_and_return_their_mean(tmp_path):
    cfg = make_config("seeds=2", "seed=3", *TINY)
    mean = sweep.train_seeds(cfg, tmp_path)
    finals = [json.loads((tmp_path / f"seed={s}" / "summary.json").read_text())["eval_return_mean"] for s in (3, 4)]
    assert mean == pytest.approx(sum(finals) / 2)
    assert make_config().seeds == 1
    for s in (3, 4):
        saved = (tmp_path / f"seed={s}" / ".hydra" / "config.yaml").read_text()
        assert f"seed: {s}\n" in saved and "seeds: 1\n" in saved
