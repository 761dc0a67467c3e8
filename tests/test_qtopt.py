"""QT-Opt: clipped double-Q targets with CEM, a short run, and bad input."""

from __future__ import annotations

import math
import os
import resource
import sys

import numpy as np
import pytest
import torch

from rlrun import runner
from rlrun.buffers import NStepReplayBuffer
from rlrun.build import build, keep_freed_memory
from rlrun.config import ConfigError
from tests.conftest import TINY, make_config, read_scalars

SMALL = ["algo=qtopt", "env=pendulum", "algo.N=32", "algo.S=4", "algo.batch_size=32", "algo.learning_starts=0",
         "algo.hidden_sizes=[16,16]"]


def test_cem_maximises_the_min_of_the_qs_or_of_the_first():
    algo = build(make_config(*SMALL, "algo.cem_iterations=4"))
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(8, 3)), dtype=torch.float32)
    grid = torch.linspace(-2, 2, 401).reshape(1, -1, 1).expand(8, -1, -1)
    grid_q = algo.q_target(obs.unsqueeze(1).expand(-1, 401, -1), grid)  # [2, 8, 401]
    for first, grid_value in ((None, grid_q.min(0).values), (1, grid_q[0])):
        best = algo.greedy(algo.q_target, obs, torch.Generator().manual_seed(0), first)
        assert ((best.actions >= -2) & (best.actions <= 2)).all()
        q = algo.q_target(obs, best.actions)
        assert torch.allclose(best.values, q.min(0).values if first is None else q[0])
        assert (best.values >= grid_value.max(1).values - 0.01).all()  # CEM's max is as good as a fine grid's
    assert torch.equal(algo.q_target(obs, best.actions, first=1), q[:1])


def test_targets_value_the_first_target_qs_argmax_by_the_smaller_target_q():
    algo = build(make_config(*SMALL, "algo.learning_starts=1000"))
    algo.iterate(0)  # 32 transitions into the buffer, no gradient step yet
    batch = algo.buffer.sample(32, np.random.default_rng(1)).to("cpu")
    generator_state = algo.train_generator.get_state()
    with torch.no_grad():
        best = algo.greedy(algo.q_target, batch.next_obs, torch.Generator().set_state(generator_state), first=1)
        y = batch.rewards + 0.99 * algo.q_target(batch.next_obs, best.actions).min(0).values * ~batch.terminated
        expected = 0.5 * ((algo.q(batch.obs, batch.actions) - y) ** 2).mean(1).sum()
        clipped_by_the_first = batch.rewards + 0.99 * best.values * ~batch.terminated
    assert not torch.allclose(y, clipped_by_the_first)  # the min of both differs from Q'_1's own maximum
    y_by_the_algorithm = algo.targets(batch)
    assert torch.allclose(y_by_the_algorithm, y)
    metrics = algo.gradient_step(batch, y_by_the_algorithm)
    assert torch.allclose(metrics["losses/q_loss"], expected)


def test_a_gradient_step_is_autograds_step_on_both_qs_squared_errors():
    """The step takes its gradient by hand (as fqi's); here the same step with autograd on
    sum_j 1/2 mean (Q_j(s, a) - y)^2: the same parameters after it, bit for bit (a batch of a power of two)."""
    algo = build(make_config(*SMALL))
    algo.iterate(0)
    batch = algo.buffer.sample(16, np.random.default_rng(1)).to("cpu")
    y = algo.targets(batch)
    plain = build(make_config(*SMALL))
    plain.load_state_dict(algo.state_dict())
    expected = 0.5 * ((plain.q(batch.obs, batch.actions) - y) ** 2).mean(1).sum()
    expected.backward()
    plain.optimizer.step()
    metrics = algo.gradient_step(batch, y)
    for got, want in zip(algo.q.parameters(), plain.q.parameters(), strict=True):
        assert torch.equal(got, want)
    assert torch.equal(metrics["losses/q_loss"], expected.detach())


def test_an_iteration_searches_the_targets_of_its_s_minibatches_at_once_from_phi_prime_as_it_starts():
    algo = build(make_config(*SMALL, "algo.K=2", "algo.S=3", "algo.batch_size=8"))
    searched, stepped = [], []
    targets, gradient_step = algo.targets, algo.gradient_step

    def spy_targets(batch):
        y = targets(batch)
        searched.append((len(batch), [p.clone() for p in algo.q_target.parameters()], y))
        return y

    def spy_step(batch, y):
        stepped.append((len(batch), y))
        return gradient_step(batch, y)

    algo.targets, algo.gradient_step = spy_targets, spy_step
    algo.iterate(0)
    assert [rows for rows, *_ in searched] == [24, 24] and [rows for rows, _ in stepped] == [8] * 6
    for k in range(2):  # each step fits its own rows of its iteration's targets
        assert torch.equal(torch.cat([y for _, y in stepped[3 * k : 3 * k + 3]]), searched[k][2])
    # the second search sees phi' after the first iteration's three Polyak steps, not phi' as the run began
    assert any(not torch.equal(a, b) for a, b in zip(searched[0][1], searched[1][1], strict=True))


def test_short_run_logs_q_and_cem_tags_and_acts_within_the_bounds(tmp_path):
    final = runner.train(make_config(*SMALL, *TINY), tmp_path)
    scalars = read_scalars(tmp_path)
    for tag in ("losses/q_loss", "losses/q_values", "losses/cem_elite_std", "charts/episodic_return"):
        assert scalars[tag] and all(math.isfinite(v) for _, v in scalars[tag]), tag
    assert -2000 < final < 0


def test_an_iteration_steps_both_qs_s_times():
    algo = build(make_config(*SMALL, "algo.K=2"))
    steps, metrics = algo.iterate(0)
    assert steps == 32 and algo.optimizer.state_dict()["state"][0]["step"].item() == 2 * 4
    assert metrics["losses/cem_elite_std"] >= 0


def test_n_step_rows_end_where_the_rollout_does_and_feed_the_gradient_steps():
    algo = build(make_config(*SMALL, "algo.n_step=4", "algo.S=1"))
    steps, metrics = algo.iterate(0)  # one env, 32 steps: a Pendulum episode (200 steps) never ends in them
    assert isinstance(algo.buffer, NStepReplayBuffer) and steps == 32
    m = np.minimum(4, 32 - np.arange(32))  # the last 3 rows stop at the rollout's end
    assert np.allclose(algo.buffer.discounts[:32], 0.99**m)
    assert math.isfinite(metrics["losses/q_loss"])


def test_an_iteration_smaller_than_a_batch_samples_full_batches():
    algo = build(make_config(*SMALL, "algo.N=4", "algo.S=8"))
    steps, metrics = algo.iterate(0)  # 4 transitions in the buffer, batches of 32 drawn with replacement
    assert steps == 4 and algo.optimizer.state_dict()["state"][0]["step"].item() == 8
    assert math.isfinite(metrics["losses/q_loss"])


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("algo.cem_elites=100", "algo.cem_elites=100 is not allowed: <= algo.cem_samples (16)"),
        ("algo.S=0", "algo.S=0 is not allowed: an integer >= 1"),
        ("algo.cem_init_std=0", "algo.cem_init_std=0 is not allowed: a number > 0"),
        ("env=cartpole", "(for Discrete actions use algo=fqi)"),
    ],
)
def test_bad_input_is_one_config_error(override, allowed):
    with pytest.raises(ConfigError) as err:
        build(make_config(*SMALL, override))
    assert allowed in str(err.value)


@pytest.mark.skipif(not hasattr(os, "confstr") or sys.platform != "linux", reason="glibc's malloc only")
def test_large_freed_tensors_leave_their_memory_for_the_next_ones_without_page_faults():
    keep_freed_memory()  # build() calls it; a CEM search over the targets of S minibatches frees MBs at once

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def search():
        activations = [torch.ones(2**20) for _ in range(3)]  # 4 MiB each, 12 MiB freed together
        del activations

    search()  # the heap grows once
    before = faults()
    for _ in range(20):
        search()
    # fewer than one search's 3 x 1024 pages in all (glibc's defaults, fresh process: 10,000-16,000)
    assert faults() - before < 3 * 1024
