"""What the optional extras bring in behaves: the SLURM presets, sweep results printed at the end, and
third-party noise (repeated warnings, MuJoCo's log file, alembic's INFO lines) kept down."""

from __future__ import annotations

import json
import logging
import logging.config
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlrun import sweep
from rlrun.config import config_dir
from rlrun.quiet import quiet_third_party
from tests.conftest import run_cli


def hydra_config(*overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def fake_commands(folder, *names: str) -> str:
    folder.mkdir()
    for name in names:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return str(folder)


def test_slurm_launcher_without_a_cluster_says_so_in_one_line_and_writes_nothing(tmp_cwd, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setenv("PATH", fake_commands(tmp_cwd / "bin"))  # no srun, no sbatch
    proc = run_cli("-m", "launcher=slurm", "seed=0,1", cwd=tmp_cwd, check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line == (
        "rlrun: error: launcher=slurm found no SLURM cluster (no srun or sbatch on PATH); "
        "launcher=slurm_local runs the same jobs on this machine"
    )
    assert not (tmp_cwd / "outputs").exists()


def test_slurm_launcher_goes_ahead_where_srun_and_sbatch_are_found(tmp_path, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = hydra_config("launcher=slurm")
    monkeypatch.setenv("PATH", fake_commands(tmp_path / "bin", "srun", "sbatch"))
    sweep.check_slurm_cluster(cfg)
    monkeypatch.setenv("PATH", "")
    sweep.check_slurm_cluster(hydra_config("launcher=slurm_local"))  # runs anywhere
    with pytest.raises(SystemExit) as stopped:
        sweep.check_slurm_cluster(cfg)
    assert stopped.value.code == 2


@pytest.mark.parametrize("launcher", ["slurm", "slurm_local"])
def test_submitit_files_stay_in_the_sweep_folder_with_no_stray_percent_j_folder(tmp_path, launcher):
    submitit = pytest.importorskip("submitit")
    cfg = hydra_config(f"launcher={launcher}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    folder = cfg.hydra.launcher.submitit_folder
    assert folder == str(tmp_path / "sweep" / ".submitit")
    executor = submitit.AutoExecutor(cluster="local", folder=folder)  # the local executor writes as SLURM's does
    executor.update_parameters(timeout_min=1)
    assert [job.result() for job in executor.map_array(abs, [-3])] == [3]
    files = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(p.parent == Path("sweep", ".submitit") for p in files)
    assert not any("%j" in p.name for p in tmp_path.rglob("*"))


def test_sweep_end_lists_each_finished_run_with_its_final_eval_return(tmp_path, caplog):
    for folder, mean in [("algo.lr=0.1/seed=0", 12.5), ("algo.lr=0.1/seed=1", 500.0), ("algo.lr=1/seed=0", 9.0)]:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "summary.json").write_text(json.dumps({"eval_return_mean": mean, "eval_return_std": 1.25}))
    (tmp_path / "algo.lr=9" / "seed=0").mkdir(parents=True)  # a job that did not finish
    with caplog.at_level(logging.INFO, logger="rlrun"):
        sweep.SweepHooks().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert caplog.messages[-1].splitlines()[1:] == [
        "  algo.lr=0.1/seed=0  final eval return 12.50 ± 1.25",
        "  algo.lr=0.1/seed=1  final eval return 500.00 ± 1.25",
        "  algo.lr=1/seed=0    final eval return 9.00 ± 1.25",
    ]


def test_each_distinct_warning_is_shown_once_even_when_the_filters_change(recwarn):
    quiet_third_party()
    quiet_third_party()  # again, as every job of a sweep in one process does
    for _ in range(3):
        warnings.warn("the same", UserWarning)
        with warnings.catch_warnings():  # clears Python's own record of what it has shown
            warnings.simplefilter("ignore", DeprecationWarning)
    warnings.warn("the same", RuntimeWarning)
    warnings.warn("another", UserWarning)
    assert [(w.category, str(w.message)) for w in recwarn] == [
        (UserWarning, "the same"),
        (RuntimeWarning, "the same"),
        (UserWarning, "another"),
    ]


def test_mujoco_warnings_are_shown_once_and_no_log_file_is_written(tmp_cwd, recwarn):
    mujoco = pytest.importorskip("mujoco")
    previous = mujoco.get_mju_user_warning()
    quiet_third_party()
    try:
        model = mujoco.MjModel.from_xml_string(
            "<mujoco><worldbody><body><joint type='slide'/><geom size='0.1'/></body></worldbody></mujoco>"
        )
        for _ in range(3):  # each MjData warns once of an unstable simulation
            data = mujoco.MjData(model)
            data.qpos[0] = float("nan")
            mujoco.mj_step(model, data)
    finally:
        mujoco.set_mju_user_warning(previous)
    shown = [str(w.message) for w in recwarn if str(w.message).startswith("MuJoCo: ")]
    assert len(shown) == 1 and "unstable" in shown[0]
    assert list(tmp_cwd.iterdir()) == []


def test_mujoco_is_not_imported_by_quieting_it_and_quieted_when_something_imports_it(tmp_path):
    pytest.importorskip("mujoco")
    code = """
import sys, warnings
from rlrun.quiet import quiet_third_party
quiet_third_party()
quiet_third_party()
assert "mujoco" not in sys.modules
import mujoco
model = mujoco.MjModel.from_xml_string(
    "<mujoco><worldbody><body><joint type='slide'/><geom size='0.1'/></body></worldbody></mujoco>"
)
for _ in range(3):
    data = mujoco.MjData(model)
    data.qpos[0] = float("nan")
    mujoco.mj_step(model, data)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("MuJoCo: ") == 1 and "unstable" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no MUJOCO_LOG.TXT


def test_alembic_plugin_lines_of_an_optuna_study_stay_out_of_the_sweep_log(capsys):
    hydra_logging = OmegaConf.to_container(hydra_config("search=optuna").hydra.hydra_logging)
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    try:
        logging.config.dictConfig(hydra_logging)  # what Hydra does in the sweep's own process
        logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.schemas")
        logging.getLogger("rlrun").info("the sweep's own line")
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
    out = capsys.readouterr().out
    assert "the sweep's own line" in out and "setup plugin" not in out
