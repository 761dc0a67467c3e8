"""`rlrun-compare`: grouping by setting, the statistics, the table, CSV and plot, on event files
written here with known values."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from rlrun import compare, logger


def write_run(run_dir: Path, config: dict, evals: list[tuple[int, float]], finished: bool = True) -> None:
    """A run folder as rlrun leaves it: events in tb/, the config, and summary.json once finished."""
    writer = SummaryWriter(str(run_dir / "tb"))
    for step, value in evals:
        writer.add_scalar(compare.EVAL_TAG, value, step)
        writer.add_scalar("charts/episodic_return", value - 1, step)
    writer.close()
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    if finished:
        (run_dir / "summary.json").write_text(json.dumps({"eval_return_mean": evals[-1][1]}))


def config(seed: int, algo: str = "reinforce", progress: str = "none", **algo_keys) -> dict:
    return {
        "seed": seed,
        "total_timesteps": 300,
        "log": {"progress": progress},
        "env": {"name": "cartpole", "id": "CartPole-v1"},
        "algo": {"name": algo, "gamma": 0.99, **algo_keys},
    }


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Two learning rates: lr=0.1 with finals 0, 0, 0, 10 over four seeds; lr=0.01 with 50, 60."""
    finals = {0.1: [0, 0, 0, 10], 0.01: [50, 60]}
    for lr, values in finals.items():
        for seed, final in enumerate(values):
            evals = [(100 + seed, 0.0), (200 + seed, final / 2), (300 + seed, float(final))]
            # the log setting differs between seeds: it must not split the group
            write_run(
                tmp_path / f"algo.lr={lr}" / f"seed={seed}",
                config(seed, progress=["none", "bar"][seed % 2], lr=lr),
                evals,
            )
    write_run(tmp_path / "algo.lr=0.1" / "seed=9", config(9, lr=0.1), [(100, 500.0)], finished=False)
    return tmp_path


def test_the_tool_reads_the_tag_the_logger_writes():
    assert compare.EVAL_TAG == logger.EVAL_TAG


def test_runs_group_by_config_without_seed_and_are_labelled_by_the_key_that_differs(sweep):
    runs, skipped = compare.find_runs(sweep)
    assert skipped == [sweep / "algo.lr=0.1" / "seed=9"]  # unfinished: no summary.json
    groups = compare.group_runs(runs)
    assert [g.label for g in groups] == ["algo.lr=0.01", "algo.lr=0.1"]
    assert [sorted(r.config["seed"] for r in g.runs) for g in groups] == [[0, 1], [0, 1, 2, 3]]
    assert sorted(groups[1].finals) == [0, 0, 0, 10]


def test_known_values_give_known_mean_iqm_and_interval(sweep):
    rows = {g.label: compare.summarise(g, threshold=5) for g in compare.group_runs(compare.find_runs(sweep)[0])}
    row = rows["algo.lr=0.1"]
    assert row["seeds"] == 4 and row["final_mean"] == pytest.approx(2.5)
    assert row["iqm"] == 0.0  # the middle two of 0, 0, 0, 10
    # resampled means: 0 with p=(3/4)^4=0.32, >= 7.5 with p=0.05, 10 with p=0.004 -> bounds 0 and 7.5
    assert (row["ci_low"], row["ci_high"]) == (0.0, 7.5)
    assert row["steps_to_threshold"] == 203 and row["reached"] == "1/4"  # only seed 3 gets to 5 (at 203)
    row = rows["algo.lr=0.01"]
    assert row["final_mean"] == 55 and row["iqm"] == 55 and (row["ci_low"], row["ci_high"]) == (50, 60)
    assert row["steps_to_threshold"] == 200.5 and row["reached"] == "2/2"  # 25 at step 200, 30 at 201


def test_iqm_drops_a_quarter_at_each_end():
    assert compare.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5
    assert compare.iqm([1, 2, 100]) == pytest.approx(103 / 3)  # fewer than 4: nothing to drop


def test_algorithms_are_told_apart_by_name_not_by_the_keys_one_lacks():
    settings = [
        compare.setting_of(compare.flatten(config(0, lr=0.01, N=10))),
        compare.setting_of(compare.flatten(config(0, lr=0.1, N=10))),
        compare.setting_of(compare.flatten(config(0, algo="actor_critic", lr=0.01, critic_lr=0.1))),
    ]
    assert compare.label_keys(settings) == ["algo.name", "algo.lr"]
    assert compare.label_keys(settings[:1]) == ["algo.name", "env.name"]


def test_command_prints_the_table_and_writes_csv_and_plot(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert compare.main([str(sweep), "--threshold", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "algo.lr=0.1 " in printed and "1/4" in printed and "skipped 1 folder" in printed
    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["group"], r["seeds"], float(r["final_mean"])) for r in rows] == [
        ("algo.lr=0.01", "2", 55.0),
        ("algo.lr=0.1", "4", 2.5),
    ]
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_runs_is_one_error_line(tmp_path, capsys):
    assert compare.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"rlrun-compare: error: no finished rlrun runs under {tmp_path}"
