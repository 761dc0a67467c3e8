"""The online actor-critic box (algo.online=true): it learns a bandit, the collector's one-step path
matches its T-step loop, and algo.critic_lr gives V a step size of its own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlrun import envs, runner
from rlrun.build import build
from rlrun.config import ConfigError
from rlrun.data import RolloutCollector
from tests.conftest import make_config
from tests.test_learning import COMMON, DISCRETE  # importing it registers the bandits

ONLINE = ["algo=actor_critic", "algo.online=true"]


def test_online_box_learns_a_contextual_bandit(tmp_path):
    """One transition per update, 600 of them: a flipped sign in either step leaves it near 1/3."""
    overrides = ["algo.lr=0.01", "algo.max_grad_norm=null", "algo.hidden_sizes=[16]", "total_timesteps=600"]
    runner.train(make_config(*DISCRETE, *ONLINE, *overrides, *COMMON, f"eval.every={10**9}"), tmp_path)
    final = json.loads((tmp_path / runner.SUMMARY_FILE).read_text())["eval_return_mean"]
    assert final >= 0.9, f"final eval {final:.3f} < 0.9"


def test_one_step_collects_match_one_many_step_collect():
    """collect(sample, 1) takes a path of its own; k of them give what one collect(sample, k) gives."""
    cfg = make_config("env.max_episode_steps=12").env
    actions = iter(np.random.default_rng(0).integers(2, size=(100, 2)))

    def sample(obs):
        a = next(actions)
        return a, a

    one = RolloutCollector(envs.make_vec_env(cfg, 2), seed=3)
    steps = [one.collect(sample, 1) for _ in range(60)]
    actions = iter(np.random.default_rng(0).integers(2, size=(100, 2)))
    many = RolloutCollector(envs.make_vec_env(cfg, 2), seed=3).collect(sample, 60)
    for key in ("actions", "rewards", "terminated", "truncated", "valid"):
        joined = np.concatenate([getattr(r, key) for r in steps])
        assert joined.dtype == getattr(many, key).dtype
        np.testing.assert_array_equal(joined, getattr(many, key), err_msg=key)
    np.testing.assert_array_equal(np.stack([r.obs[0] for r in steps] + [steps[-1].obs[1]]), many.obs)
    for key in ("episode_returns", "episode_lengths"):
        np.testing.assert_array_equal(np.concatenate([getattr(r, key) for r in steps]), getattr(many, key))
    assert many.truncated.any() and many.terminated.any()  # both kinds of episode end were crossed


def first_box_moves(*overrides: str) -> tuple[float, float]:
    """The largest change of any actor and of any critic weight in the first online box."""
    algo = build(make_config(*ONLINE, "algo.optimizer=adam", "algo.max_grad_norm=null", *overrides))
    before = {k: v.clone() for k, v in algo.net.state_dict().items()}
    algo.iterate(0)
    moved = {k: (v - before[k]).abs().max().item() for k, v in algo.net.state_dict().items()}
    return (max(m for k, m in moved.items() if k.startswith("actor")),
            max(m for k, m in moved.items() if k.startswith("critic")))


def test_critic_lr_is_the_step_size_of_v_alone():
    """Adam's first step moves a weight by about its learning rate, whatever its gradient's size."""
    actor, critic = first_box_moves("algo.lr=0.001", "algo.critic_lr=0.01")
    assert actor == pytest.approx(0.001, rel=0.01) and critic == pytest.approx(0.01, rel=0.01)
    actor, critic = first_box_moves("algo.lr=0.001")  # null: lr for both
    assert actor == pytest.approx(0.001, rel=0.01) and critic == pytest.approx(0.001, rel=0.01)


def test_critic_lr_equal_to_lr_changes_nothing_and_decays_with_lr():
    nets = []
    for extra in ([], ["algo.critic_lr=0.0007"]):
        algo = build(make_config(*ONLINE, "algo.lr=0.0007", "algo.lr_anneal_steps=100", *extra))
        for step in range(30):
            algo.iterate(step)
        nets.append(algo.net.state_dict())
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])
    assert [g["lr"] for g in algo.optimizer.param_groups] == pytest.approx([0.0007 * 0.71] * 2)


def test_critic_lr_with_a_shared_body_is_refused():
    with pytest.raises(ConfigError, match="algo.critic_lr"):
        build(make_config(*ONLINE, "algo.shared=true", "algo.critic_lr=0.01"))
