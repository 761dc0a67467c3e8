"""`rlrun-compare`: grouping by setting, one seed per run, one panel per env, the statistics, the
table, CSV and plot, on run folders written here with known values (no training)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from rlrun import compare, logger
from rlrun.events import events_dir


def write_run(
    run_dir: Path,
    config: dict,
    evals: list[tuple[int, float]],
    finished: bool = True,
    finished_at: float | None = None,
    tag: str = compare.EVAL_TAG,
) -> None:
    """A run folder as rlrun leaves it: events in the folder itself, the config, and summary.json
    once finished (written at `finished_at`, seconds since the epoch, when given)."""
    writer = SummaryWriter(str(run_dir))
    for step, value in evals:
        writer.add_scalar(tag, value, step)
        writer.add_scalar("charts/episodic_return", value - 1, step)
    writer.close()
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    if finished:
        (run_dir / "summary.json").write_text(json.dumps({"eval_return_mean": evals[-1][1]}))
        if finished_at is not None:
            os.utime(run_dir / "summary.json", (finished_at, finished_at))


def config(seed: int, algo: str = "reinforce", progress: str = "none", env: str = "cartpole", **algo_keys) -> dict:
    return {
        "seed": seed,
        "total_timesteps": 300,
        "log": {"progress": progress},
        "env": {"name": env, "id": {"cartpole": "CartPole-v1", "pendulum": "Pendulum-v1"}[env]},
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


def test_runs_written_with_their_events_in_tb_are_still_read(sweep):
    old = sweep / "algo.lr=0.01" / "seed=1"  # as rlrun wrote runs before: events in <run>/tb/
    (old / "tb").mkdir()
    for event_file in old.glob("events.out.tfevents.*"):
        event_file.rename(old / "tb" / event_file.name)
    assert events_dir(old) == old / "tb"  # where a resumed old run goes on writing, so it stays one run
    runs, _ = compare.find_runs(sweep)
    assert [r.final for r in runs if r.path == old] == [60.0]
    assert len(runs) == 6


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


def test_a_seed_run_again_counts_once_the_newest_kept_and_the_table_says_so(tmp_path, capsys):
    for seed, final in enumerate([10.0, 20.0, 30.0]):
        write_run(
            tmp_path / "sweep" / f"seed={seed}", config(seed, lr=0.1), [(100, 0.0), (200, final)], finished_at=1e9
        )
    # seed 1 again, later, with settings that change nothing trained (and a key the configs gained since, off)
    again = config(1, progress="bar", lr=0.1)
    again.update(eval={"every": 50}, checkpoint={"every": 100}, device="cpu", threads=2, resume="x")
    again["env"]["allow_import"] = False
    write_run(tmp_path / "again", again, [(100, 0.0), (200, 80.0)], finished_at=2e9)
    write_run(tmp_path / "longer", {**config(1, lr=0.1), "total_timesteps": 600}, [(600, 90.0)])  # trained longer

    groups = compare.group_runs(compare.find_runs(tmp_path)[0])
    assert [(sorted(r.seed for r in g.runs), len(g.duplicates)) for g in groups] == [([0, 1, 2], 1), ([1], 0)]
    group = groups[0]
    assert [d.path for d in group.duplicates] == [tmp_path / "sweep" / "seed=1"]
    assert sorted(group.finals) == [10.0, 30.0, 80.0]  # the newest run of seed 1
    row = compare.summarise(group, threshold=None)
    assert row["seeds"] == 3 and row["duplicates"] == 1 and row["final_mean"] == pytest.approx(40.0)
    assert (row["ci_low"], row["ci_high"]) == compare.bootstrap_ci([10.0, 30.0, 80.0])  # over distinct seeds

    assert compare.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    header, first = printed[0].split(), printed[1].split()
    assert first[header.index("seeds")] == "3" and first[header.index("duplicates")] == "1"
    assert (
        f"set aside 1 duplicate run(s), older than a run of the same config and seed: {tmp_path}/sweep/seed=1"
        in printed
    )


def test_envs_get_a_panel_each_and_are_never_pooled(tmp_path):
    for seed in range(2):
        write_run(tmp_path / f"cart{seed}", config(seed), [(100, 100.0), (200, 400.0 + seed)])
        write_run(tmp_path / f"pend{seed}", config(seed, env="pendulum"), [(100, -1500.0), (200, -300.0 - seed)])
    write_run(tmp_path / "cart_ppo", config(0, algo="ppo"), [(100, 200.0), (200, 500.0)])

    groups = compare.group_runs(compare.find_runs(tmp_path)[0])
    assert [(g.env, g.label, len(g.runs)) for g in groups] == [
        ("cartpole", "algo=ppo", 1),
        ("cartpole", "algo=reinforce", 2),
        ("pendulum", "algo=reinforce env=pendulum", 2),
    ]
    assert all(len({r.config["env.name"] for r in g.runs}) == 1 for g in groups)

    fig = compare.figure(groups, threshold=475, metric=compare.EVAL_TAG, title=str(tmp_path))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["cartpole", "pendulum"]
    assert panels[0].get_ylim()[0] > 0 > panels[1].get_ylim()[1]  # each its own y-axis
    assert [len(ax.get_legend().get_texts()) for ax in panels] == [3, 1]  # the threshold only where it is on scale
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend().get_window_extent(renderer) for ax in panels]
    areas = [ax.get_window_extent(renderer) for ax in panels] + legends
    for legend in legends:  # a legend covers no panel and no other legend
        assert sum(legend.overlaps(area) for area in areas) == 1


def test_the_curve_ends_on_the_table_row(tmp_path):
    """Seeds end at different steps and the last evaluations drop: interpolating onto the steps
    every seed covers would end the curve above the table's mean."""
    ends = {0: [(1000, 500.0), (5000, 500.0), (10100, 100.0)], 1: [(1200, 300.0), (5200, 500.0), (10900, 200.0)]}
    for seed, evals in ends.items():
        write_run(tmp_path / f"seed={seed}", config(seed), evals)
    (group,) = compare.group_runs(compare.find_runs(tmp_path)[0])
    steps, mean, low, high = compare.curve_band(group)
    row = compare.summarise(group, threshold=None)
    assert steps[-1] == 10900 and mean[-1] == pytest.approx(row["final_mean"]) == 150.0
    assert (low[-1], high[-1]) == pytest.approx((row["ci_low"], row["ci_high"]))
    steps, values = compare.held_curves(group)
    assert steps[0] == 1200  # from the step by which both seeds have evaluated
    assert values[:, steps.searchsorted(10100)].tolist() == [100.0, 500.0]  # latest evaluations, not interpolated
    summaries = [json.loads((tmp_path / f"seed={s}" / "summary.json").read_text()) for s in ends]
    assert sorted(group.finals) == sorted(s["eval_return_mean"] for s in summaries)


def test_another_metric_is_compared_and_a_run_without_it_is_one_error_line(tmp_path, capsys):
    for seed in range(2):
        write_run(tmp_path / f"seed={seed}", config(seed), [(100, 0.5), (200, 0.25 * seed)], tag="eval/success_rate")
    assert compare.main([str(tmp_path), "--metric", "eval/success_rate"]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[4:6] == ["final_mean", "iqm"] and row.split()[-4:-2] == ["0.125", "0.125"]
    write_run(tmp_path / "seed=2", config(2), [(100, 10.0)])
    assert compare.main([str(tmp_path), "--metric", "eval/success_rate"]) == 2
    assert capsys.readouterr().err == (
        "rlrun-compare: error: --metric='eval/success_rate' is not allowed: "
        f"a tag every finished run logged; {tmp_path / 'seed=2'} logged eval/episodic_return\n"
    )


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run: (run / "summary.json").write_text('{"eval_return_mean": 4'), "summary.json cannot be read: "),
        (lambda run: (run / "summary.json").write_text("[1, 2]"), "summary.json is damaged: it holds no JSON object"),
        (lambda run: (run / ".hydra" / "config.yaml").write_text("seed: [0"), "config.yaml cannot be read: "),
        (lambda run: (run / ".hydra" / "config.yaml").write_text("env: {name: x}"), "it has no seed, algo.name"),
        (lambda run: (run / ".hydra" / "config.yaml").unlink(), "has summary.json but no .hydra/config.yaml"),
        (lambda run: [p.unlink() for p in run.glob("events.out.tfevents.*")],
         "has summary.json but no TensorBoard events"),
    ],
)
def test_a_damaged_run_is_one_error_line(sweep, capsys, damage, message):
    damage(sweep / "algo.lr=0.01" / "seed=1")
    assert compare.main([str(sweep)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("rlrun-compare: error: ") and message in captured.err
    assert captured.err.count("\n") == 1 and not (sweep / "compare.csv").exists()


def test_bad_arguments_are_one_error_line(tmp_path, capsys):
    assert compare.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"rlrun-compare: error: {tmp_path / 'missing'} is not a folder\n"
    with pytest.raises(SystemExit) as exit_:
        compare.main([str(tmp_path), "--threshold", "high"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "rlrun-compare: error: argument --threshold: invalid float value: 'high'\n"
