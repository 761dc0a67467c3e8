"""PPO: the clipped objective on hand-made ratios, a short CLI run, determinism and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlrun.algos.ppo import clipped_surrogate
from rlrun.build import build
from rlrun.config import ConfigError
from tests.conftest import TINY, make_config, read_scalars, run_cli

PPO_TAGS = {
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
}
SMALL = ["algo=ppo", "algo.num_envs=4", "algo.T=16", "algo.minibatch_size=16", "algo.epochs=2"]


def test_clipped_surrogate_on_hand_made_ratios_and_advantages():
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.5, 0.5, 0.9], requires_grad=True)
    advantages = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -2.0])
    loss = clipped_surrogate(ratio, advantages, clip_range=0.2)
    # min(rho A, clip(rho) A): 0.5 | 1.0 | min(1.5, 1.2) = 1.2 | min(-1.5, -1.2) = -1.5 | min(-0.5, -0.8) = -0.8
    # | min(-1.8, -1.8) = -1.8 (0.9 is inside [0.8, 1.2])
    assert loss.item() == pytest.approx(-(0.5 + 1.0 + 1.2 - 1.5 - 0.8 - 1.8) / 6)
    loss.backward()
    # a clipped term has no gradient: the ratio gains nothing by moving further from 1 where it helps
    np.testing.assert_allclose(ratio.grad.numpy(), [-1 / 6, -1 / 6, 0, 1 / 6, 0, 2 / 6], rtol=1e-6)


def test_cli_run_logs_its_loss_tags(tmp_cwd):
    run_cli(*SMALL, "algo.value_clip=0.2", *TINY, cwd=tmp_cwd)
    (run_dir,) = (tmp_cwd / "outputs").glob("*/*")
    scalars = read_scalars(run_dir)
    for tag in PPO_TAGS | {"charts/episodic_return", "eval/episodic_return"}:
        assert scalars[tag] and all(math.isfinite(v) for _, v in scalars[tag]), tag
    assert all(0 <= v <= 1 for _, v in scalars["losses/clipfrac"])


def test_learning_rate_anneals_linearly_to_zero_over_its_steps():
    algo = build(make_config(*SMALL, "algo.lr_anneal_steps=128"))
    lr, done = algo.cfg.lr, 0

    def iterate() -> dict:
        nonlocal done
        steps, metrics = algo.iterate(done)
        done += steps
        return metrics

    assert iterate()["charts/learning_rate"] == lr
    before = done
    assert iterate()["charts/learning_rate"] == pytest.approx(lr * (1 - before / 128))
    while done < 128:
        iterate()
    assert iterate()["charts/learning_rate"] == 0


def test_same_seed_same_updates_and_continuous_actions_train():
    def metrics(seed):
        algo = build(make_config(*SMALL, "env=pendulum", f"seed={seed}"))
        return [algo.iterate(step)[1] for step in (0, 64)]

    first, again, other = metrics(0), metrics(0), metrics(1)
    assert first == again and first != other
    assert all(math.isfinite(m[tag]) for m in first for tag in PPO_TAGS)


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("algo.clip_range=0", "a number > 0"),
        ("algo.clip_range=-0.2", "a number > 0"),
        ("algo.gae_lambda=1.01", "a number in [0, 1]"),
        ("algo.epochs=0", "an integer >= 1"),
        ("algo.value_clip=0", "null or a number > 0"),
        ("algo.lr=0", "a number > 0"),
    ],
)
def test_bad_values_are_refused_with_the_key_and_what_is_allowed(override, allowed):
    with pytest.raises(ConfigError) as err:
        build(make_config("algo=ppo", override))
    assert str(err.value).startswith(override.split("=")[0]) and str(err.value).endswith(allowed)


def test_a_minibatch_larger_than_the_rollout_is_one_line_and_exit_code_2(tmp_cwd):
    proc = run_cli("algo=ppo", "algo.num_envs=2", "algo.T=8", "algo.minibatch_size=32", *TINY, cwd=tmp_cwd, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rlrun: error: algo.minibatch_size=32 is not allowed: an integer in [1, 16] (a rollout holds num_envs * T = 16 steps)"
    ]
    assert not list((tmp_cwd / "outputs").glob("*/*"))
