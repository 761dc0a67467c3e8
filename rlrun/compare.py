"""`rlrun-compare DIR`: the finished runs under DIR, one per seed, grouped by setting: a table, a
figure with one panel per environment, and a CSV.

    rlrun-compare outputs/multirun/2026-11-25/10-00-00 --threshold 475
    rlrun-compare outputs --metric eval/test_tasks/episodic_return

A finished run is a folder with summary.json (written last), .hydra/config.yaml and its TensorBoard
events (in the folder itself; in tb/ for runs written before rlrun moved them). What a run trained
is its config without the keys that do not change it: seed, seeds, resume, device, threads,
eval.*, log.*, checkpoint.* (a key set to null or false counts as absent: runs made before the
configs gained a key that is off by default still match).

- Seeds, not runs: runs that trained the same thing with the same seed count once; the newest
  (by the time of its summary.json) is kept and the others are set aside, counted in the table's
  `duplicates` column.
- Groups: runs that trained the same thing but for the seed. Each is labelled by the keys that
  tell it apart from the other groups on its environment; groups on different environments are
  never pooled, and each environment has its own panel with its own y-axis.
- The table's number for a seed is its final evaluation: the last point of --metric in its
  events (for eval/episodic_return, the value summary.json's eval_return_mean holds). Per group:
  seeds, the mean and interquartile mean of these finals, a 95% bootstrap confidence interval of
  the mean over the seeds, and with --threshold the median env steps to it (over the seeds that
  reached it).
- The curve at env step x is the mean over the seeds of each seed's latest evaluation at or before
  x (no interpolation), drawn at 200 steps from the step by which every seed has evaluated to the
  group's last evaluation. Its last point, marked with a dot, is therefore the table's mean of the
  finals, and its band there the table's interval.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlrun.config import ConfigError
from rlrun.events import EVENTS_GLOB, events_dir, has_events, run_dir_of

EVAL_TAG = "eval/episodic_return"  # rlrun.logger.EVAL_TAG, repeated to keep torch out of this tool
SUMMARY_FILE = "summary.json"  # rlrun.runner.SUMMARY_FILE: written last, so it marks a finished run
CONFIG_FILE = Path(".hydra") / "config.yaml"
IGNORED_KEYS = ("seed", "seeds", "resume", "device", "threads")
IGNORED_SECTIONS = ("eval.", "log.", "checkpoint.")
REQUIRED_KEYS = ("seed", "env.name", "algo.name")
CONFIDENCE = 0.95
RESAMPLES = 10_000
CURVE_POINTS = 200  # steps a curve is drawn at; finer than a panel shows, however many seeds there are
COLUMNS_PER_BATCH = 256  # curve points bootstrapped at once: bounds memory at RESAMPLES x this
LEGEND_WIDTH = 60  # characters per legend line, about a panel's width at the legend's font size


class BadInput(Exception):
    """A folder with no runs, or a finished run whose files cannot be read. `str(err)` is the one
    line shown to the user."""


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flat: dotted key -> value
    evals: list[tuple[int, float]]  # (env steps, value of the metric), in step order
    finished_at: float  # modification time of summary.json
    x_axis: str = "env_steps"  # what its steps count: env_steps, gradient_steps (offline) or iterations

    @property
    def seed(self) -> Any:
        return self.config["seed"]

    @property
    def final(self) -> float:
        """The final evaluation: the last point of the metric."""
        return self.evals[-1][1]

    def steps_to(self, threshold: float) -> int | None:
        """Env steps at the first evaluation whose value is >= threshold (None: never)."""
        return next((step for step, value in self.evals if value >= threshold), None)


@dataclass
class Group:
    setting: dict[str, Any]
    runs: list[Run] = field(default_factory=list)  # one per seed: the newest
    duplicates: list[Run] = field(default_factory=list)  # older runs of a seed in `runs`, set aside
    env: str = ""  # the environment's panel title
    label: str = ""

    @property
    def finals(self) -> np.ndarray:
        return np.array([run.final for run in self.runs])

    def value(self, key: str) -> Any:
        """The key's value as its runs' configs hold it (`setting` leaves out null and false)."""
        return self.runs[0].config.get(key)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def setting_of(config: dict[str, Any]) -> dict[str, Any]:
    """What the run trained, to compare with others: the config without the seed, the keys that
    do not change training, and keys set to null or false (a key the configs gained later, off by
    default, changes nothing in the runs made before it)."""
    return {
        k: v
        for k, v in config.items()
        if k not in IGNORED_KEYS and not k.startswith(IGNORED_SECTIONS) and v is not None and v is not False
    }


def _reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's flat, resolved config; BadInput if it is missing, damaged or not rlrun's."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise BadInput(f"{run_dir} has {SUMMARY_FILE} but no {CONFIG_FILE}: the run cannot be grouped")
    try:
        container = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException) as err:
        raise BadInput(f"{path} cannot be read: {_reason(err)}") from err
    config = flatten(container) if isinstance(container, dict) else {}
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise BadInput(f"{path} is not an rlrun run's config: it has no {', '.join(missing)}")
    return config


def check_summary(run_dir: Path) -> tuple[float, str]:
    """(the time summary.json was written, the run's x-axis); BadInput unless it holds a JSON object."""
    path = run_dir / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BadInput(f"{path} cannot be read: {_reason(err)}") from err
    if not isinstance(summary, dict):
        raise BadInput(f"{path} is damaged: it holds no JSON object")
    return path.stat().st_mtime, str(summary.get("x_axis", "env_steps"))


def read_evals(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) of every point of `metric` in the run's events, in step order (TensorBoard's
    reader hides what a killed attempt logged after the checkpoint it was resumed from). Raises
    BadInput without events and ConfigError when the run never logged `metric`."""
    if not has_events(run_dir):
        raise BadInput(f"{run_dir} has {SUMMARY_FILE} but no TensorBoard events")
    acc = EventAccumulator(str(events_dir(run_dir)), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    if metric not in tags:
        shown = sorted(t for t in tags if t.startswith("eval/")) or sorted(tags)
        logged = f"logged {', '.join(shown)}" if shown else "has no readable scalars"
        raise ConfigError("--metric", metric, f"a tag every finished run logged; {run_dir} {logged}")
    return sorted({e.step: e.value for e in acc.Scalars(metric)}.items())


def read_run(run_dir: Path, metric: str = EVAL_TAG) -> Run:
    """The finished run in `run_dir`. Raises BadInput for a missing or damaged file and
    ConfigError when the run never logged `metric`."""
    finished_at, x_axis = check_summary(run_dir)
    return Run(run_dir, read_config(run_dir), read_evals(run_dir, metric), finished_at, x_axis)


def find_runs(root: Path, metric: str = EVAL_TAG) -> tuple[list[Run], list[Path]]:
    """(finished runs under root, run folders skipped because they have no summary.json: unfinished
    or failed). A run folder holds summary.json or TensorBoard events."""
    events = {run_dir_of(p) for p in root.rglob(EVENTS_GLOB)}
    run_dirs = sorted(events | {p.parent for p in root.rglob(SUMMARY_FILE)})
    finished = [d for d in run_dirs if (d / SUMMARY_FILE).is_file()]
    skipped = [d for d in run_dirs if not (d / SUMMARY_FILE).is_file()]
    return [read_run(d, metric) for d in finished], skipped


def _key(setting: dict[str, Any]) -> str:
    return json.dumps(setting, sort_keys=True, default=str)


def _env_of(setting: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in setting.items() if k.startswith("env.")}


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs that trained the same thing together, one run per seed (the newest; the others go to
    `duplicates`). Each group gets its environment's panel title and a label naming the keys that
    tell it apart from the other groups on that environment. Sorted by environment, then label."""
    groups: dict[str, Group] = {}
    for run in sorted(runs, key=lambda r: (r.finished_at, str(r.path)), reverse=True):  # newest first
        setting = setting_of(run.config)
        group = groups.setdefault(_key(setting), Group(setting))
        if any(kept.seed == run.seed for kept in group.runs):
            group.duplicates.append(run)
        else:
            group.runs.append(run)
    for group in groups.values():
        group.runs.sort(key=lambda r: _order(r.seed))
    envs = {_key(_env_of(g.setting)): _env_of(g.setting) for g in groups.values()}
    env_keys = label_keys(list(envs.values()))
    ordered: list[Group] = []
    for env_key in sorted(envs, key=lambda key: [_order(envs[key].get(k)) for k in env_keys]):
        on_env = [g for g in groups.values() if _key(_env_of(g.setting)) == env_key]
        keys = label_keys([g.setting for g in on_env])
        for group in on_env:
            group.env = _describe(group, env_keys)
            # a key the group's algorithm or env does not have (fqi's filter_top) is not part of its label
            shown = [k for k in keys if k in group.runs[0].config]
            group.label = " ".join(f"{_show_key(k)}={_show_value(group.value(k))}" for k in shown)
        ordered += sorted(on_env, key=lambda g: [_order(g.value(k)) for k in keys])
    return ordered


def _describe(group: Group, env_keys: Sequence[str]) -> str:
    """The group's environment by the keys that tell it apart: `cartpole`, `frozenlake env.kwargs={...}`."""
    parts = [_show_value(group.value(k)) if k == "env.name" else f"{k}={_show_value(group.value(k))}" for k in env_keys]
    return " ".join(parts) or "env"


def _order(value: Any) -> tuple:
    """Numbers by size (N=6 before N=15), then everything else by its text."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if number else (1, 0, str(value))


def label_keys(settings: Sequence[dict[str, Any]]) -> list[str]:
    """The keys that tell the settings apart. Within a section with a `name` (algo, env), a key
    counts only between settings of the same name: two algorithms differ by `algo.name`, not by
    every key one of them lacks. With a single setting: its algorithm and environment."""
    if len(settings) == 1:
        return [k for k in ("algo.name", "env.name") if k in settings[0]]
    names = [k for k in sorted({k for s in settings for k in s}) if k.endswith(".name")]
    keys = [k for k in names if len({json.dumps(s.get(k), default=str) for s in settings}) > 1]
    for key in sorted({k for s in settings for k in s} - set(names)):
        section_name = f"{key.split('.')[0]}.name"
        buckets: dict[str, set[str]] = {}
        for s in settings:
            buckets.setdefault(json.dumps(s.get(section_name), default=str), set()).add(
                json.dumps(s.get(key), default=str)
            )
        if any(len(values) > 1 for values in buckets.values()):
            keys.append(key)
    return keys


def _show_key(key: str) -> str:
    return key.removesuffix(".name")  # `algo=reinforce`, as typed


def _show_value(value: Any) -> str:
    if isinstance(value, (list, dict, str)):
        return json.dumps(value, separators=(",", ":")).strip('"')
    return str(value)


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean after dropping the lowest and highest quarter (rounded down)."""
    x = np.sort(np.asarray(values, dtype=float))
    cut = int(0.25 * len(x))
    return float(x[cut : len(x) - cut].mean())


def resample_weights(n: int, rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """[resamples, n]: how often each of n seeds is drawn in each resample (with replacement), / n;
    `weights @ values` gives the resampled means."""
    draws = rng.integers(0, n, size=(resamples, n))
    counts = np.bincount((draws + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    return counts.reshape(resamples, n) / n


def bootstrap_ci(values: Sequence[float] | np.ndarray, seed: int = 0) -> tuple[Any, Any]:
    """95% percentile-bootstrap confidence interval of the mean over the first axis (the seeds):
    floats for values [seeds], arrays for [seeds, points]. Every column is resampled with the same
    draws, so a column equal to the finals gets the table's interval."""
    values = np.asarray(values, dtype=float)
    weights = resample_weights(len(values), np.random.default_rng(seed))
    tail = 100 * (1 - CONFIDENCE) / 2
    if values.ndim == 1:
        low, high = np.percentile(weights @ values, [tail, 100 - tail])
        return float(low), float(high)
    bounds = [
        np.percentile(weights @ values[:, i : i + COLUMNS_PER_BATCH], [tail, 100 - tail], axis=0)
        for i in range(0, values.shape[1], COLUMNS_PER_BATCH)
    ]
    low, high = np.concatenate(bounds, axis=1)
    return low, high


def summarise(group: Group, threshold: float | None) -> dict[str, Any]:
    """The group's table row, from each seed's final evaluation."""
    low, high = bootstrap_ci(group.finals)
    row = {
        "env": group.env,
        "group": group.label,
        "seeds": len(group.runs),
        "duplicates": len(group.duplicates),
        "final_mean": float(group.finals.mean()),
        "iqm": iqm(group.finals),
        "ci_low": low,
        "ci_high": high,
    }
    if threshold is not None:
        reached = [s for s in (run.steps_to(threshold) for run in group.runs) if s is not None]
        row["steps_to_threshold"] = float(np.median(reached)) if reached else None
        row["reached"] = f"{len(reached)}/{len(group.runs)}"
    return row


def held_curves(group: Group, points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values [seeds, steps]): at `points` env steps evenly from the step by which every
    seed has evaluated to the group's last evaluation, each seed's latest evaluation at or before
    the step. The last column is every seed's final evaluation."""
    start = max(run.evals[0][0] for run in group.runs)
    stop = max(run.evals[-1][0] for run in group.runs)
    steps = np.unique(np.linspace(start, stop, points).round().astype(int))
    values = []
    for run in group.runs:
        run_steps, run_values = np.array(run.evals, dtype=float).T
        values.append(run_values[np.searchsorted(run_steps, steps, side="right") - 1])
    return steps, np.stack(values)


def curve_band(group: Group) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(env steps, mean over seeds, CI low, CI high) of the group's held curves."""
    steps, values = held_curves(group)
    low, high = bootstrap_ci(values)
    return steps, values.mean(axis=0), low, high


def figure(groups: Sequence[Group], threshold: float | None, metric: str, title: str):
    """A matplotlib Figure: one panel per environment, each with its own y-axis and its legend
    beneath it (save it with bbox_inches="tight" to keep the legends in the image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[Group]] = {}
    for group in groups:
        panels.setdefault(group.env, []).append(group)
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.5 * rows), squeeze=False, layout="constrained")
    for ax, (env, on_env) in zip(axes.flat, panels.items()):
        for group in on_env:
            steps, mean, low, high = curve_band(group)
            label = textwrap.fill(f"{group.label} (n={len(group.runs)})", LEGEND_WIDTH)
            (line,) = ax.plot(steps, mean, drawstyle="steps-post", label=label)
            ax.fill_between(steps, low, high, step="post", color=line.get_color(), alpha=0.25)
            ax.plot(steps[-1:], mean[-1:], "o", color=line.get_color())
        bottom, top = ax.get_ylim()
        if threshold is not None and bottom <= threshold <= top:  # a threshold far off another env's scale is left out
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_title(env)
        units = sorted({run.x_axis.replace("_", " ") for group in on_env for run in group.runs})
        ax.set_xlabel(" or ".join(units))  # offline runs count gradient steps, online ones env steps
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"{title}\nmean over seeds of each seed's latest evaluation, 95% bootstrap CI; dot: the table's final")
    return fig


def plot(groups: Sequence[Group], threshold: float | None, metric: str, title: str, path: Path) -> None:
    """The figure as a PNG at `path`, cropped to what is drawn, legends included."""
    import matplotlib.pyplot as plt

    fig = figure(groups, threshold, metric, title)
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as aligned text; statistics with 1 decimal, or 3 when every one is below 10 in
    size (success rates and other metrics in [0, 1])."""
    statistics = ("final_mean", "iqm", "ci_low", "ci_high")
    decimals = 1 if max(abs(row[k]) for row in rows for k in statistics) >= 10 else 3
    show = {
        "env": str,
        "group": str,
        "seeds": str,
        "duplicates": str,
        **{k: lambda v: f"{v:.{decimals}f}" for k in statistics},
        "steps_to_threshold": lambda v: "-" if v is None else f"{v:.0f}",
        "reached": str,
    }
    text = ("env", "group")  # left-aligned; numbers are right-aligned
    headers = [h for h in show if h in rows[0]]
    cells = [[show[h](row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if h in text else v.rjust(w) for v, w, h in zip(values, widths, headers)).rstrip()

    return "\n".join([line(headers), *(line(c) for c in cells)])


def _listed(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths[:5]) + (" ..." if len(paths) > 5 else "")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, as for every other bad input (argparse would print the usage first)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def compare(args: argparse.Namespace) -> None:
    """Read, group, write and print; raises BadInput or ConfigError on a bad input."""
    if not args.dir.is_dir():
        raise BadInput(f"{args.dir} is not a folder")
    runs, skipped = find_runs(args.dir, args.metric)
    if not runs:
        unfinished = f" ({len(skipped)} unfinished: no {SUMMARY_FILE})" if skipped else ""
        raise BadInput(f"no finished rlrun runs under {args.dir}{unfinished}")
    groups = group_runs(runs)
    rows = [summarise(g, args.threshold) for g in groups]
    out = args.out or args.dir
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "compare.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        plot(groups, args.threshold, args.metric, str(args.dir), out / "compare.png")
    except OSError as err:
        raise ConfigError(
            "--out", str(out), f"a folder this user can write to ({err.strerror or _reason(err)})"
        ) from err
    print(format_table(rows))
    duplicates = [run.path for g in groups for run in g.duplicates]
    if duplicates:
        print(
            f"set aside {len(duplicates)} duplicate run(s), older than a run of the same config and seed: "
            + _listed(duplicates)
        )
    if skipped:
        print(f"skipped {len(skipped)} folder(s) without a finished run (no {SUMMARY_FILE}): " + _listed(skipped))
    print(f"wrote {out / 'compare.csv'} and {out / 'compare.png'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="rlrun-compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="a sweep folder, or any folder with runs beneath it")
    parser.add_argument(
        "--metric",
        default=EVAL_TAG,
        metavar="TAG",
        help=f"the eval tag compared, e.g. eval/success_rate (default: {EVAL_TAG})",
    )
    parser.add_argument("--threshold", type=float, default=None, help="metric value to reach (steps-to column)")
    parser.add_argument("--out", type=Path, default=None, help="where compare.png and compare.csv go (default: DIR)")
    args = parser.parse_args(argv)
    try:
        compare(args)
    except (ConfigError, BadInput) as err:
        print(f"rlrun-compare: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
