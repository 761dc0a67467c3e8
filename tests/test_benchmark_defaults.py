"""The table maths of scripts/benchmark_defaults.py (BENCHMARK.md): no runs, only its pure functions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # scripts/ is no package
import benchmark_defaults as bench


def test_row_counts_seeds_at_target_and_medians_over_the_seeds_that_reached_it():
    finals = [500.0, 274.9, 500.0, 480.0, 500.0]
    s = bench.pair_stats(finals, [6000, 8000, None, 10000, None], [30.0, 10.0, 20.0, 50.0, 40.0], target=475)
    assert s["iqm"] == pytest.approx((480 + 500 + 500) / 3)  # 274.9 and one 500 dropped
    assert (s["at_target"], s["seeds"]) == (4, 5)  # 480 counts, 274.9 does not (reaching 475 once is not enough)
    assert s["median_steps"] == 8000  # over the three seeds that reached it
    assert s["median_seconds"] == 30.0


def test_no_seed_reaching_the_target_gives_no_median_steps():
    s = bench.pair_stats([-150.0, -130.0], [None, None], [1.0, 2.0], target=-120)
    assert (s["at_target"], s["median_steps"]) == (0, None)


def test_iqm_interval_brackets_the_iqm_and_collapses_on_equal_seeds():
    finals = [500.0, 274.9, 500.0, 480.0, 500.0]
    low, high = bench.iqm_interval(finals)
    assert min(finals) <= low <= bench.pair_stats(finals, [None] * 5, [1.0] * 5, 475)["iqm"] <= high == 500.0
    assert bench.iqm_interval(finals) == (low, high)  # a fixed seed: the same table each time
    assert bench.iqm_interval([500.0] * 5) == (500.0, 500.0)


def test_every_benchmark_env_is_an_env_config_naming_its_gymnasium_id():
    """Each pair runs as `rlrun algo=X env=NAME`, so NAME must be a config of the id the table names."""
    import yaml

    for name, (env_id, _) in bench.ENVS.items():
        config = yaml.safe_load((bench.ROOT / "configs" / "env" / f"{name}.yaml").read_text())
        assert (config["name"], config["id"]) == (name, env_id)
