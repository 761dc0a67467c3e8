"""Actor-critic: advantage estimates on hand-computed rollouts, the rollout collector's handling of
episode ends, the online box, a short CLI run, the optimiser choice and bad input."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlrun import envs, runner
from rlrun.build import build
from rlrun.config import ConfigError
from rlrun.data import RolloutCollector, discounted_returns, gae
from rlrun.nets import Adam, RMSprop
from tests.conftest import TINY, make_config, read_scalars, run_cli

LOSS_TAGS = {"losses/policy_loss", "losses/value_loss", "losses/entropy"}

# One env, six steps, gamma = 0.5: step 1 is cut by a time limit (its final observation is s2,
# V(s2) = 4), step 2 is the env's reset, step 3 terminates, step 4 is a reset, step 5 is unfinished.
REWARDS = np.array([1, 1, 0, 2, 0, 1], dtype=np.float32)[:, None]
VALUES = np.array([1, 2, 4, 1, 3, 5, 6], dtype=np.float32)[:, None]  # V(s_0) .. V(s_6)
TERMINATED = np.array([0, 0, 0, 1, 0, 0], dtype=bool)[:, None]
TRUNCATED = np.array([0, 1, 0, 0, 0, 0], dtype=bool)[:, None]
VALID = np.array([1, 1, 0, 1, 0, 1], dtype=bool)[:, None]


def test_gae_on_a_hand_computed_rollout():
    advantages = gae(REWARDS, VALUES, TERMINATED, TRUNCATED, VALID, gamma=0.5, lam=0.5)
    # t5: 1 + .5*6 - 5 = -1 (bootstrap from the rollout's last obs); t3: 2 - 1 = 1 (terminal: no V(s'));
    # t1: 1 + .5*4 - 2 = 1 (cut: V of the final obs, and the sum stops); t0: (1 + .5*2 - 1) + .25 * 1
    np.testing.assert_allclose(advantages[:, 0], [1.25, 1, 0, 1, 0, -1])


def test_truncation_bootstraps_and_termination_does_not():
    flags = np.array([[True]])
    args = np.array([[1.0]], dtype=np.float32), np.array([[2.0], [4.0]], dtype=np.float32)
    cut = gae(*args, ~flags, flags, flags, gamma=0.5, lam=0.9)
    terminal = gae(*args, flags, ~flags, flags, gamma=0.5, lam=0.9)
    assert cut[0, 0] == 1 + 0.5 * 4 - 2 and terminal[0, 0] == 1 - 2


def test_n_step_returns_on_the_same_rollout_and_gae_at_its_lambda_limits():
    returns = discounted_returns(REWARDS, TERMINATED, TRUNCATED, VALUES[1:], gamma=0.5)
    valid = VALID[:, 0]
    np.testing.assert_allclose(returns[valid, 0], [2.5, 3, 2, 4])  # 1 + .5*(1 + .5*4); 1 + .5*4; 2; 1 + .5*6
    n_step_advantages = returns - VALUES[:-1]
    lam1 = gae(REWARDS, VALUES, TERMINATED, TRUNCATED, VALID, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(lam1[valid], n_step_advantages[valid])
    lam0 = gae(REWARDS, VALUES, TERMINATED, TRUNCATED, VALID, gamma=0.5, lam=0.0)
    np.testing.assert_allclose(lam0[valid, 0], [1, 1, 1, -1])  # the one-step TD errors


def test_collector_marks_reset_steps_and_keeps_the_final_observation_across_rollouts():
    env = envs.make_vec_env(make_config("env.max_episode_steps=3").env, 2)
    collector = RolloutCollector(env, seed=0)

    def sample(obs):
        actions = np.zeros(len(obs), dtype=np.int64)
        return actions, actions

    first, second = collector.collect(sample, 5), collector.collect(sample, 5)
    np.testing.assert_array_equal(first.valid[:, 0], [1, 1, 1, 0, 1])
    np.testing.assert_array_equal(first.truncated[:, 0], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(first.rewards[:, 0], [1, 1, 1, 0, 1])
    assert not first.terminated.any() and first.steps == 8
    assert not np.allclose(first.obs[3], first.obs[4])  # obs[3]: the cut episode's final obs; obs[4]: a reset
    np.testing.assert_array_equal(first.obs[5], second.obs[0])  # the next rollout goes on from there
    np.testing.assert_array_equal(second.valid[:, 0], [1, 1, 0, 1, 1])  # the episode begun before carries on
    np.testing.assert_array_equal(second.episode_lengths, [3, 3])
    np.testing.assert_array_equal(first.episode_returns, [3, 3])


def test_online_box_updates_once_per_transition_and_never_on_a_reset_step():
    algo = build(make_config("algo=actor_critic", "algo.online=true", "env.max_episode_steps=2"))
    collected = []
    collect = algo.collector.collect
    algo.collector.collect = lambda sample, T: collected.append(collect(sample, T)) or collected[-1]
    boxes = [algo.online_box() for _ in range(5)]
    assert [steps for steps, _ in boxes] == [1] * 5
    assert len(collected) == 7  # 5 transitions and the 2 reset steps after the first two episodes
    assert sum(not r.valid.any() for r in collected) == 2
    assert [m["charts/episodic_length"] for _, m in boxes if "charts/episodic_length" in m] == [2, 2]


def test_one_iteration_is_one_online_box():
    algo = build(make_config("algo=actor_critic", "algo.online=true", "env.max_episode_steps=10"))
    steps, metrics = algo.iterate(0)
    assert steps == 1
    assert LOSS_TAGS <= set(metrics) and all(math.isfinite(metrics[tag]) for tag in LOSS_TAGS)
    assert metrics["charts/learning_rate"] == algo.cfg.lr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_box_moves_v_toward_its_target_and_pi_along_the_advantage(seed):
    """One box on fresh networks: a first Adam step moves every weight against its gradient's sign,
    so V(s) must move toward r + gamma V(s') and log pi(a|s) in the direction of A."""
    algo = build(make_config("algo=actor_critic", "algo.online=true", "algo.entropy_coef=0", f"seed={seed}"))
    net, seen = algo.net, []
    collect = algo.collector.collect
    algo.collector.collect = lambda sample, T: seen.append(collect(sample, T)) or seen[-1]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    algo.online_box()
    s, s_next = torch.as_tensor(seen[-1].obs[:, 0])
    a, r = torch.as_tensor(seen[-1].actions[0, 0]), float(seen[-1].rewards[0, 0])
    with torch.no_grad():
        new_v, new_v_next, new_log_pi = net.value(s).item(), net.value(s_next).item(), net.distribution(s).log_prob(a)
        net.load_state_dict(before)
        old_v, old_v_next, old_log_pi = net.value(s).item(), net.value(s_next).item(), net.distribution(s).log_prob(a)
    target = r + 0.99 * old_v_next
    assert abs(new_v - target) < abs(old_v - target)  # step 2
    advantage = r + 0.99 * new_v_next - new_v  # step 3, with the updated V
    assert np.sign((new_log_pi - old_log_pi).item()) == np.sign(advantage)  # steps 4-5


@pytest.mark.parametrize("advantage", ["nstep", "gae"])
def test_batched_loss_is_the_mean_over_valid_steps_of_the_textbook_terms(advantage):
    """The batched box's one loss against the lecture's terms written out with boolean masks: policy
    gradient, value regression and entropy, each a mean over the valid steps (reset steps left out)."""
    algo = build(make_config("algo=actor_critic", "algo.num_envs=4", "algo.T=16", f"algo.advantage={advantage}",
                             "algo.normalize_advantages=true", "algo.entropy_coef=0.1", "algo.value_coef=0.7"))
    cfg, seen = algo.cfg, {}
    collect = algo.collector.collect
    algo.collector.collect = lambda *args: seen.update(rollout=collect(*args)) or seen["rollout"]
    algo.gradient_step = lambda loss: seen.update(loss=loss)  # no step: the same networks for the check below
    for _ in range(3):  # 48 steps of 4 envs under a near-uniform policy: episodes end, and reset steps follow
        algo.iterate(0)
    rollout = seen["rollout"]
    assert not rollout.valid.all()
    with torch.no_grad():
        obs, valid = torch.as_tensor(rollout.obs), torch.as_tensor(rollout.valid)
        dist, values = algo.net(obs[:-1])
        v = torch.cat([values, algo.net.value(obs[-1])[None]]).numpy()
        args = rollout.rewards, rollout.terminated, rollout.truncated
        if advantage == "nstep":
            returns = discounted_returns(*args, v[1:], cfg.gamma)
            advantages = returns - v[:-1]
        else:
            advantages = gae(rollout.rewards, v, *args[1:], rollout.valid, cfg.gamma, cfg.gae_lambda)
            returns = advantages + v[:-1]
        returns, advantages = torch.as_tensor(returns)[valid], torch.as_tensor(advantages)[valid]
        advantages = (advantages - advantages.mean()) / (advantages.std(correction=0) + 1e-8)
        policy_loss = -(dist.log_prob(torch.as_tensor(rollout.actions))[valid] * advantages).mean()
        value_loss = 0.5 * ((values[valid] - returns) ** 2).mean()
        entropy = dist.entropy()[valid].mean()
    expected = policy_loss + 0.7 * value_loss - 0.1 * entropy
    torch.testing.assert_close(seen["loss"].detach(), expected)


def test_online_run_logs_its_loss_tags(tmp_path):
    final = runner.train(make_config("algo=actor_critic", "algo.online=true", "log.every=100", *TINY), tmp_path)
    scalars = read_scalars(tmp_path)
    assert LOSS_TAGS <= set(scalars) and math.isfinite(final)
    steps = [step for step, _ in scalars["losses/value_loss"]]
    assert steps == list(range(100, 601, 100))  # one point, the mean of 100 boxes, per log.every


def test_cli_batched_run_logs_its_loss_tags(tmp_cwd):
    run_cli("algo=actor_critic", "algo.num_envs=4", "algo.T=8", "algo.shared=true", "algo.advantage=nstep", *TINY,
            cwd=tmp_cwd)
    (run_dir,) = (tmp_cwd / "outputs").glob("*/*")
    scalars = read_scalars(run_dir)
    for tag in LOSS_TAGS | {"losses/explained_variance", "charts/episodic_return", "eval/episodic_return"}:
        assert scalars[tag] and all(math.isfinite(v) for _, v in scalars[tag]), tag


def test_continuous_actions_stay_within_the_bounds():
    algo = build(make_config("algo=actor_critic", "env=pendulum", "algo.num_envs=2", "algo.T=4",
                                    "algo.log_std_init=2"))
    steps, metrics = algo.iterate(0)
    assert steps == 8 and all(math.isfinite(metrics[tag]) for tag in LOSS_TAGS)
    obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32) * 10
    assert np.abs(algo.act(obs)).max() <= 2.0


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("algo.gae_lambda=1.5", "a number in [0, 1]"),
        ("algo.gae_lambda=-0.1", "a number in [0, 1]"),
        ("algo.advantage=td", "one of nstep, gae"),
        ("algo.num_envs=0", "an integer >= 1"),
        ("algo.max_grad_norm=0", "null or a number > 0"),
    ],
)
def test_bad_values_are_refused_with_the_key_and_what_is_allowed(override, allowed):
    with pytest.raises(ConfigError) as err:
        build(make_config("algo=actor_critic", override))
    assert str(err.value).startswith(override.split("=")[0]) and str(err.value).endswith(allowed)


class MultiBinaryActions(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.MultiBinary(3)


def test_an_action_space_it_cannot_handle_is_refused():
    gym.register("rlrun-test/MultiBinaryActions-v0", entry_point=MultiBinaryActions)
    with pytest.raises(ConfigError, match="Discrete or Box action spaces for algo=actor_critic"):
        build(make_config("algo=actor_critic", "env=gym", "env.id=rlrun-test/MultiBinaryActions-v0"))


def test_rmsprop_is_the_optimiser_asked_for_and_a_run_continues_from_its_state_bit_for_bit():
    overrides = ("algo=actor_critic", "env=cartpole", "algo.num_envs=4", "algo.T=8")
    assert isinstance(build(make_config(*overrides, "algo.optimizer=adam")).optimizer, Adam)
    first = build(make_config(*overrides, "algo.optimizer=rmsprop"))
    assert isinstance(first.optimizer, RMSprop)
    for i in range(3):
        first.iterate(32 * i)
    second = build(make_config(*overrides, "algo.optimizer=rmsprop", "seed=1"))
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    for i in range(3, 6):
        first.iterate(32 * i)
        second.iterate(32 * i)
    assert first.optimizer.state_dict()["state"][0]["step"].item() == 6
    assert all(torch.equal(p, q) for p, q in zip(first.net.parameters(), second.net.parameters()))
