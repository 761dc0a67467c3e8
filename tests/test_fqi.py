"""Fitted Q-iteration: its targets, its loop's bookkeeping, online and offline runs, bad input."""

from __future__ import annotations

import json
import logging
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlrun import collect, datasets, runner
from rlrun.algos.fqi import epsilon_at, q_targets
from rlrun.buffers import NStepReplayBuffer, ReplayBuffer, Transitions, from_rollout, n_step_transitions
from rlrun.build import build
from rlrun.config import ConfigError
from rlrun.data import Rollout
from tests.conftest import TINY, make_config, read_scalars, run_cli

# Three transitions: an ordinary step, a step into a terminal state, a step cut by the time limit.
HAND_MADE = {
    "observations": np.zeros((3, 4), np.float32),
    "actions": np.array([0, 1, 0]),
    "rewards": np.array([1.0, 1.0, 1.0], np.float32),
    "next_observations": np.zeros((3, 4), np.float32),
    "terminated": np.array([False, True, False]),
    "truncated": np.array([False, False, True]),
}
NEXT_Q_TARGET = torch.tensor([[1.0, 2.0], [5.0, 6.0], [3.0, 0.0]])  # Q_phi'(s', .)
NEXT_Q_ONLINE = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # Q_phi(s', .)


def hand_made_batch() -> Transitions:
    return datasets.to_transitions(HAND_MADE).to(torch.device("cpu"))


def test_targets_take_the_max_bootstrap_past_a_time_limit_and_stop_at_a_terminal():
    y = q_targets(hand_made_batch(), 0.5, NEXT_Q_TARGET, None)
    assert y.tolist() == [1 + 0.5 * 2, 1, 1 + 0.5 * 3]


def test_double_q_targets_pick_a_prime_with_the_online_q_and_value_it_with_the_target():
    y = q_targets(hand_made_batch(), 0.5, NEXT_Q_TARGET, NEXT_Q_ONLINE)
    assert y.tolist() == [1 + 0.5 * 1, 1, 1 + 0.5 * 0]


def test_epsilon_decays_linearly_then_stays():
    assert [epsilon_at(s, 1.0, 0.1, 100) for s in (0, 50, 100, 1000)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


def test_replay_buffer_keeps_the_newest_transitions_and_samples_only_stored_ones():
    buffer = ReplayBuffer(4, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2))

    def rows(start, n):
        r = np.arange(start, start + n, dtype=np.float32)
        return Transitions(r[:, None], np.zeros(n, np.int64), r, r[:, None], np.zeros(n, bool))

    buffer.add(rows(0, 3))
    assert set(buffer.sample(50, np.random.default_rng(0)).rewards) == {0, 1, 2}
    buffer.add(rows(3, 3))
    assert len(buffer) == 4 and set(buffer.sample(200, np.random.default_rng(0)).rewards) == {2, 3, 4, 5}


def test_transitions_cat_then_split_gives_back_each_batch_as_numpy_and_as_tensors():
    rng = np.random.default_rng(0)

    def batch(n, discounts):
        return Transitions(
            obs={"a": rng.random((n, 2), dtype=np.float32), "b": rng.integers(3, size=n)},
            actions=rng.integers(2, size=n),
            rewards=rng.random(n, dtype=np.float32),
            next_obs={"a": rng.random((n, 2), dtype=np.float32), "b": rng.integers(3, size=n)},
            terminated=rng.random(n) < 0.5,
            discounts=rng.random(n, dtype=np.float32) if discounts else None,
        )

    for discounts in (False, True):
        batches = [batch(4, discounts) for _ in range(3)]
        joined = Transitions.cat(batches)
        assert len(joined) == 12 and joined.obs["a"].shape == (12, 2)
        for parts in (joined.split(4), joined.to("cpu").split(4)):
            assert len(parts) == 3
            for part, original in zip(parts, batches, strict=True):
                for field in ("actions", "rewards", "terminated", "discounts"):
                    got, want = getattr(part, field), getattr(original, field)
                    assert (got is None and want is None) or np.array_equal(np.asarray(got), want)
                for key in ("a", "b"):
                    assert np.array_equal(np.asarray(part.next_obs[key]), original.next_obs[key])


def test_one_iteration_collects_n_transitions_and_takes_k_times_s_steps():
    algo = build(make_config("algo=fqi", "algo.N=64", "algo.num_envs=4", "algo.K=2", "algo.S=3",
                                    "algo.batch_size=16", "algo.learning_starts=0"))
    before = [p.clone() for p in algo.q.parameters()]
    steps, metrics = algo.iterate(0)
    assert 60 <= steps <= 64 and len(algo.buffer) == steps  # reset steps after an episode end are no transitions
    assert algo.optimizer.state_dict()["state"][0]["step"].item() == 2 * 3
    assert {"losses/q_loss", "losses/q_values", "charts/epsilon"} <= set(metrics)
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.q.parameters()))
    assert algo.q_target.state_dict()["body.0.weight"].ne(algo.q.state_dict()["body.0.weight"]).any()


def test_online_run_then_a_dataset_from_its_model_then_an_offline_run(tmp_cwd, caplog):
    run_cli("algo=fqi", "env=cartpole", "algo.learning_starts=256", "hydra.run.dir=online", *TINY, cwd=tmp_cwd)
    scalars = read_scalars(tmp_cwd / "online")
    for tag in ("losses/q_loss", "losses/q_values", "charts/epsilon", "eval/episodic_return"):
        assert scalars[tag] and all(math.isfinite(v) for _, v in scalars[tag]), tag

    collect.main(["--out", str(tmp_cwd / "d.npz"), "--transitions", "500", "--policy", "online", "--epsilon", "0.3"])
    cfg = make_config("algo=fqi", f"algo.dataset={tmp_cwd / 'd.npz'}", "algo.n_step=1", "algo.K=2", "algo.S=50", "log.every=100", *TINY)
    with caplog.at_level(logging.INFO, logger="rlrun"):
        final = runner.train(cfg, tmp_cwd / "offline")
    summary = json.loads((tmp_cwd / "offline" / "summary.json").read_text())
    assert summary["steps"] == 600 and summary["x_axis"] == "gradient_steps" and math.isfinite(final)  # offline
    assert "| 600 gradient steps |" in caplog.messages[-1]  # the last line in the run's own unit
    assert [s for s, _ in read_scalars(tmp_cwd / "offline")["losses/q_loss"]] == [100, 200, 300, 400, 500, 600]


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("algo.N=32", "algo.N=32 is not allowed: >= algo.batch_size (64)"),
        ("algo.N=250", "algo.N=250 is not allowed: a multiple of algo.num_envs (8)"),
        ("algo.K=0", "algo.K=0 is not allowed: an integer >= 1"),
        ("algo.S=0", "algo.S=0 is not allowed: an integer >= 1"),
        ("algo.collect=greedy", "one of egreedy, random"),
        ("algo.dataset=/no/such.npz", "algo.dataset='/no/such.npz' is not allowed: an existing .npz dataset file"),
        ("env=pendulum", "(for Box actions use algo=qtopt)"),
    ],
)
def test_bad_input_is_one_config_error(override, allowed):
    with pytest.raises(ConfigError) as err:
        build(make_config("algo=fqi", "algo.n_step=1", override))  # CartPole's pair takes 5 steps, for online runs only
    assert allowed in str(err.value)


def test_a_dataset_smaller_than_a_batch_is_refused(tmp_path):
    datasets.save(tmp_path / "small.npz", HAND_MADE)
    with pytest.raises(ConfigError, match="algo.batch_size=64 is not allowed: <= the dataset's 3 transitions"):
        build(make_config("algo=fqi", f"algo.dataset={tmp_path / 'small.npz'}", "algo.n_step=1"))


@pytest.mark.parametrize("loss", ["mse", "huber"])
@pytest.mark.parametrize("double_q", [True, False])
def test_a_gradient_step_is_autograds_step_on_the_lectures_loss(loss, double_q):
    """The step takes its gradient by hand; here the same step written plainly, with autograd on
    1/2 mean (Q_phi(s, a) - y)^2 (or the Huber loss), double Q's a' from Q_phi(s', .) apart: the same
    parameters after it and the same loss and mean Q reported, bit for bit where the batch size is a
    power of two, as here and in the CartPole pair (64). Otherwise autograd's gradient at Q(s, a),
    fl(0.5 / B) * 2e, and the step's e / B can differ in their last bit."""
    overrides = ["algo.N=64", "algo.batch_size=16", "algo.learning_starts=0", "algo.K=1", "algo.S=2",
                 f"algo.loss={loss}", f"algo.double_q={double_q}", "algo.max_grad_norm=1"]
    algo = build(make_config("algo=fqi", *overrides))
    algo.iterate(0)
    batch = algo.buffer.sample(16, np.random.default_rng(1)).to(torch.device("cpu"))
    plain = build(make_config("algo=fqi", *overrides))
    plain.load_state_dict(algo.state_dict())

    with torch.no_grad():
        next_online = plain.q(batch.next_obs) if double_q else None
        y = q_targets(batch, plain.cfg.gamma, plain.q_target(batch.next_obs), next_online)
    q_taken = plain.q(batch.obs).gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
    if loss == "huber":
        expected_loss = torch.nn.functional.smooth_l1_loss(q_taken, y)
    else:
        expected_loss = 0.5 * ((q_taken - y) ** 2).mean()
    expected_loss.backward()
    torch.nn.utils.clip_grad_norm_(plain.q.parameters(), 1)
    plain.optimizer.step()

    reported = algo.gradient_step(batch)
    for got, want in zip(algo.q.parameters(), plain.q.parameters(), strict=True):
        assert torch.equal(got, want)
    assert torch.equal(reported["losses/q_loss"], expected_loss.detach())
    assert torch.equal(reported["losses/q_values"], q_taken.detach().mean())


def test_the_learning_rate_anneals_to_zero_over_lr_anneal_steps_and_is_what_adam_uses():
    algo = build(make_config("algo=fqi", "algo.N=64", "algo.batch_size=16", "algo.learning_starts=0",
                             "algo.K=1", "algo.S=1", "algo.lr_anneal_steps=256"))
    for step in (0, 64, 192, 256, 320):
        lr = algo.iterate(step)[1]["charts/learning_rate"]
        assert lr == pytest.approx(algo.cfg.lr * max(0.0, 1 - step / 256))
        assert all(group["lr"] == lr for group in algo.optimizer.param_groups)


def rollout_of(rewards, terminated, truncated, valid):
    """A one-env rollout whose observation at time t is t, so rows show which step they lead to."""
    T = len(rewards)

    def column(x, dtype):
        return np.array(x, dtype)[:, None]

    return Rollout(
        obs=np.arange(T + 1, dtype=np.float32)[:, None, None],
        actions=np.zeros((T, 1), np.int64),
        rewards=column(rewards, np.float32),
        terminated=column(terminated, bool),
        truncated=column(truncated, bool),
        valid=column(valid, bool),
        episode_returns=np.zeros(0), episode_lengths=np.zeros(0, np.int64), episode_successes=np.zeros(0, bool),
    )


# steps 0-2: an episode that terminates at step 2; 3: the reset; 4-6: one cut by the time limit at
# step 5; 6: a reset; 7-8: an episode still running when the rollout ends
N_STEP_ROLLOUT = {
    "rewards": [1, 2, 4, 0, 1, 2, 0, 1, 2],
    "terminated": [0, 0, 1, 0, 0, 0, 0, 0, 0],
    "truncated": [0, 0, 0, 0, 0, 1, 0, 0, 0],
    "valid": [1, 1, 1, 0, 1, 1, 0, 1, 1],
}


def test_n_step_rows_sum_rewards_until_n_the_episode_end_or_the_rollout_end():
    rows, discounts = n_step_transitions(rollout_of(**N_STEP_ROLLOUT), n=3, gamma=0.5)
    assert rows.obs[:, 0].tolist() == [0, 1, 2, 4, 5, 7, 8]
    assert rows.rewards.tolist() == [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4, 1 + 0.5 * 2, 2, 1 + 0.5 * 2, 2]
    assert rows.next_obs[:, 0].tolist() == [3, 3, 3, 6, 6, 9, 9]  # the final observation, or s_T
    assert rows.terminated.tolist() == [True, True, True, False, False, False, False]  # a cut bootstraps
    assert discounts.tolist() == [0.125, 0.25, 0.5, 0.25, 0.5, 0.25, 0.5]  # gamma^m


def test_one_step_rows_are_the_rollouts_transitions_with_gamma_each():
    rollout = rollout_of(**N_STEP_ROLLOUT)
    rows, discounts = n_step_transitions(rollout, n=1, gamma=0.5)
    plain = from_rollout(rollout)
    for field in ("obs", "actions", "rewards", "next_obs", "terminated"):
        assert np.array_equal(getattr(rows, field), getattr(plain, field)), field
    assert discounts.tolist() == [0.5] * 7


def test_targets_of_n_step_rows_bootstrap_with_gamma_to_the_rows_own_length():
    batch = hand_made_batch()
    batch.discounts = torch.tensor([0.125, 0.25, 0.5])
    assert q_targets(batch, 0.5, NEXT_Q_TARGET, None).tolist() == [1 + 0.125 * 2, 1, 1 + 0.5 * 3]


def test_an_n_step_buffer_samples_each_row_with_its_discount_and_survives_a_state_round_trip():
    buffer = NStepReplayBuffer(5, gym.spaces.Box(-10, 10, (1,)), gym.spaces.Discrete(2), n=3, gamma=0.5)
    buffer.add_rollout(rollout_of(**N_STEP_ROLLOUT))  # 7 rows in 5 places: the newest 5 are kept
    batch = buffer.sample(100, np.random.default_rng(0))
    expected = {2: 0.5, 4: 0.25, 5: 0.5, 7: 0.25, 8: 0.5}  # first obs of a row -> its gamma^m
    assert {(o, d) for o, d in zip(batch.obs[:, 0].tolist(), batch.discounts.tolist())} == set(expected.items())
    copy = NStepReplayBuffer(5, gym.spaces.Box(-10, 10, (1,)), gym.spaces.Discrete(2), n=3, gamma=0.5)
    copy.load_state_dict(buffer.state_dict())
    again = copy.sample(100, np.random.default_rng(0))
    assert np.array_equal(again.discounts, batch.discounts) and np.array_equal(again.rewards, batch.rewards)


def test_fqi_with_n_step_fills_an_n_step_buffer_and_learns_from_it():
    algo = build(make_config("algo=fqi", "algo.n_step=3", "algo.N=64", "algo.batch_size=16", "algo.learning_starts=0",
                             "algo.K=1", "algo.S=2"))
    steps, metrics = algo.iterate(0)
    assert isinstance(algo.buffer, NStepReplayBuffer) and len(algo.buffer) == steps
    gamma = algo.cfg.gamma
    assert np.unique(algo.buffer.discounts[: len(algo.buffer)]) == pytest.approx([gamma**3, gamma**2, gamma])  # m = 3, 2, 1
    assert math.isfinite(metrics["losses/q_loss"])


@pytest.mark.parametrize(
    "overrides, allowed",
    [
        (["algo.n_step=0"], "algo.n_step=0 is not allowed: an integer in [1, 1000]"),
        (["env=bitflip", "algo.her.strategy=future", "algo.n_step=3"], "algo.n_step=3 is not allowed: 1 with algo.her"),
        (["algo.dataset=d.npz"], "algo.n_step=5 is not allowed: 1 with algo.dataset"),  # CartPole's online pair
    ],
)
def test_bad_n_step_is_one_config_error(overrides, allowed):
    with pytest.raises(ConfigError) as err:
        build(make_config("algo=fqi", *overrides))
    assert allowed in str(err.value)
