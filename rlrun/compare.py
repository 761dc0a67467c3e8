"""`rlrun-compare DIR`: the runs under DIR, grouped by setting, as a table, a plot and a CSV.

    rlrun-compare outputs/multirun/2026-11-25/10-00-00 --threshold 475

A run is a folder with `tb/` (TensorBoard events, read with tensorboard's own reader) and
`.hydra/config.yaml`. Runs whose configs are equal once the seed (and keys that do not change
what is learned: logging, checkpoints, threads, device) are left out form a group. Per group:
the number of seeds, the mean and the interquartile mean of the final eval returns, a 95%
bootstrap confidence interval of that mean, and the env steps to `--threshold` (median over the
seeds that reached it). Groups are labelled by the keys whose values differ between them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EVAL_TAG = "eval/episodic_return"  # rlrun.logger.EVAL_TAG, repeated to keep torch out of this tool
IGNORED_KEYS = ("seed", "threads", "device", "resume")
IGNORED_SECTIONS = ("log.", "checkpoint.")
CONFIDENCE = 0.95
RESAMPLES = 10_000


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flat: dotted key -> value
    evals: list[tuple[int, float]]  # (env steps, mean eval return), in step order

    @property
    def final(self) -> float:
        return self.evals[-1][1]

    def steps_to(self, threshold: float) -> int | None:
        """Env steps at the first evaluation whose return is >= threshold (None: never)."""
        return next((step for step, value in self.evals if value >= threshold), None)


@dataclass
class Group:
    setting: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    label: str = ""

    @property
    def finals(self) -> np.ndarray:
        return np.array([run.final for run in self.runs])


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def setting_of(config: dict[str, Any]) -> dict[str, Any]:
    """The config without the seed and the keys that do not change what is learned."""
    return {k: v for k, v in config.items() if k not in IGNORED_KEYS and not k.startswith(IGNORED_SECTIONS)}


def read_run(tb_dir: Path) -> Run | None:
    """The run whose events are in `tb_dir`, or None if it has no config or no evaluation."""
    run_dir = tb_dir.parent
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        return None
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if EVAL_TAG not in acc.Tags()["scalars"]:
        return None
    evals = sorted({e.step: e.value for e in acc.Scalars(EVAL_TAG)}.items())
    config = flatten(OmegaConf.to_container(OmegaConf.load(config_file), resolve=False))
    return Run(run_dir, config, evals)


def find_runs(root: Path) -> tuple[list[Run], list[Path]]:
    """(finished runs under root, folders skipped: unfinished, failed or not rlrun runs)."""
    runs, skipped = [], []
    for tb_dir in sorted({p.parent for p in root.rglob("events.out.tfevents.*")}):
        run = read_run(tb_dir) if (tb_dir.parent / "summary.json").is_file() else None
        if run is None:
            skipped.append(tb_dir.parent)
        else:
            runs.append(run)
    return runs, skipped


def _key(setting: dict[str, Any]) -> str:
    return json.dumps(setting, sort_keys=True, default=str)


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs with equal settings together, each group labelled by the keys that tell it apart."""
    groups: dict[str, Group] = {}
    for run in runs:
        setting = setting_of(run.config)
        groups.setdefault(_key(setting), Group(setting)).runs.append(run)
    keys = label_keys([g.setting for g in groups.values()])
    for group in groups.values():
        group.label = " ".join(f"{_show_key(k)}={_show_value(group.setting.get(k))}" for k in keys)
    return sorted(groups.values(), key=lambda g: [_order(g.setting.get(k)) for k in keys])


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
    return json.dumps(value, separators=(",", ":")).strip('"') if isinstance(value, (list, str)) else str(value)


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean after dropping the lowest and highest quarter (rounded down)."""
    x = np.sort(np.asarray(values, dtype=float))
    cut = int(0.25 * len(x))
    return float(x[cut : len(x) - cut].mean())


def bootstrap_means(values: np.ndarray, rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """Means of `resamples` resamples (with replacement) of the first axis of values: [resamples, ...]."""
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    return values[idx].mean(axis=1)


def bootstrap_ci(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap confidence interval of the mean."""
    means = bootstrap_means(np.asarray(values, dtype=float), np.random.default_rng(seed))
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def summarise(group: Group, threshold: float | None) -> dict[str, Any]:
    low, high = bootstrap_ci(group.finals)
    row = {
        "group": group.label,
        "seeds": len(group.runs),
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


def curve_band(group: Group, points: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(env steps, mean, CI low, CI high) of the group's eval curves, interpolated onto the steps
    every seed covers (seeds evaluate at slightly different steps when iterations vary in size)."""
    start = max(run.evals[0][0] for run in group.runs)
    stop = min(run.evals[-1][0] for run in group.runs)
    steps = np.unique(np.linspace(start, stop, points)) if stop > start else np.array([float(stop)])
    curves = np.stack([np.interp(steps, *np.array(run.evals, dtype=float).T) for run in group.runs])
    means = bootstrap_means(curves, np.random.default_rng(0), resamples=2_000)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return steps, curves.mean(axis=0), low, high


def plot(groups: Sequence[Group], threshold: float | None, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for group in groups:
        steps, mean, low, high = curve_band(group)
        (line,) = ax.plot(steps, mean, label=f"{group.label} (n={len(group.runs)})")
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.25)
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (mean over seeds, 95% bootstrap CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    show = {
        "group": lambda v: v,
        "seeds": str,
        "final_mean": lambda v: f"{v:.1f}",
        "iqm": lambda v: f"{v:.1f}",
        "ci_low": lambda v: f"{v:.1f}",
        "ci_high": lambda v: f"{v:.1f}",
        "steps_to_threshold": lambda v: "-" if v is None else f"{v:.0f}",
        "reached": str,
    }
    headers = [h for h in show if h in rows[0]]
    cells = [[show[h](row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    for c in cells:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths))))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rlrun-compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", type=Path, help="a sweep folder, or any folder with runs beneath it")
    parser.add_argument("--threshold", type=float, default=None, help="eval return to reach (steps-to column)")
    parser.add_argument("--out", type=Path, default=None, help="where compare.png and compare.csv go (default: DIR)")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        print(f"rlrun-compare: error: {args.dir} is not a folder", file=sys.stderr)
        return 2
    runs, skipped = find_runs(args.dir)
    if not runs:
        print(f"rlrun-compare: error: no finished rlrun runs under {args.dir}", file=sys.stderr)
        return 2
    groups = group_runs(runs)
    rows = [summarise(g, args.threshold) for g in groups]
    out = args.out or args.dir
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(groups, args.threshold, str(args.dir), out / "compare.png")
    print(format_table(rows))
    if skipped:
        print(
            f"skipped {len(skipped)} folder(s) without a finished run (no summary.json or no eval): "
            + ", ".join(str(p) for p in skipped[:5])
            + (" ..." if len(skipped) > 5 else "")
        )
    print(f"wrote {out / 'compare.csv'} and {out / 'compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
