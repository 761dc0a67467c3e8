"""Imitation: behaviour cloning's loss and filtering, DAgger's aggregation, episode boundaries in
datasets (files without them too), rlrun-collect's whole episodes and mixed sources, Minari files."""

from __future__ import annotations

import json
import math
import re

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlrun import checkpoint, collect, datasets, runner
from rlrun.algos.bc import best_episodes
from rlrun.algos.imitation import negative_log_likelihood
from rlrun.buffers import from_rollout
from rlrun.build import build
from rlrun.config import ConfigError
from rlrun.data import RolloutCollector
from rlrun.envs import make_vec_env
from rlrun.nets import Policy
from tests.conftest import make_config, read_scalars

CARTPOLE = gym.make("CartPole-v1")
OBS, ACTIONS = CARTPOLE.observation_space, CARTPOLE.action_space
SHORT_CARTPOLE = make_config("env=cartpole", "env.max_episode_steps=20").env  # both kinds of episode end occur


def constant_policy(action_space: gym.Space, output: list[float]) -> Policy:
    """A policy whose network outputs `output` whatever the observation."""
    policy = Policy(OBS, action_space, [8])
    with torch.no_grad():
        for parameter in policy.body.parameters():
            parameter.zero_()
        policy.body[-1].bias.copy_(torch.tensor(output))
    return policy


def test_discrete_loss_is_the_cross_entropy_of_the_labels():
    policy = constant_policy(ACTIONS, [math.log(0.25), math.log(0.75)])
    losses = negative_log_likelihood(policy, torch.zeros(4, 4), torch.tensor([0, 1, 1, 1]))
    assert losses["losses/policy_loss"].item() == pytest.approx(-(math.log(0.25) + 3 * math.log(0.75)) / 4)
    assert losses["losses/entropy"].item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_continuous_loss_is_the_gaussian_negative_log_likelihood():
    policy = constant_policy(gym.spaces.Box(-2, 2, (2,)), [0.5, -1.0])
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([math.log(0.5), math.log(2.0)]))
    actions = torch.tensor([[0.5, -1.0], [1.5, 1.0]])  # at the mean; then 2 and 1 standard deviations off
    log_normaliser = math.log(0.5) + math.log(2.0) + math.log(2 * math.pi)
    expected = (log_normaliser + (log_normaliser + 0.5 * (2**2 + 1**2))) / 2
    assert negative_log_likelihood(policy, torch.zeros(2, 4), actions)["losses/policy_loss"].item() == pytest.approx(
        expected
    )


def episodes_dataset(returns: list[float], length: int = 2) -> dict:
    """CartPole-shaped episodes of `length` steps, episode i's observations all i, return returns[i]."""
    n = len(returns) * length
    ids = np.repeat(np.arange(len(returns)), length)
    rewards = np.zeros(n, np.float32)
    rewards[length - 1 :: length] = returns
    ends = np.zeros(n, bool)
    ends[length - 1 :: length] = True
    obs = np.repeat(ids[:, None], 4, 1).astype(np.float32)
    return {
        "observations": obs,
        "actions": ids % 2,
        "rewards": rewards,
        "next_observations": obs,
        "terminated": ends,
        "truncated": np.zeros(n, bool),
        "episode_ids": ids,
    }


def test_filtering_keeps_the_best_fraction_of_episodes_by_return():
    data = episodes_dataset([3, 10, 1, 7])
    assert list(best_episodes(data, 1.0)) == [1, 3, 0, 2]
    assert set(best_episodes(data, 0.5)) == {1, 3}
    assert set(best_episodes(data, 0.6)) == {1, 3, 0}  # ceil(2.4) episodes
    assert set(best_episodes(data, 0.01)) == {1}  # never none


def test_filtered_bc_fits_only_the_kept_episodes(tmp_path):
    path = tmp_path / "d.npz"
    datasets.save(path, episodes_dataset([3, 10, 1, 7]))
    algo = build(make_config("algo=bc", f"algo.dataset={path}", "algo.filter_top=0.5", "algo.S=3", "algo.batch_size=4"))
    assert sorted(set(algo.obs[:, 0].tolist())) == [1.0, 3.0] and algo.actions.tolist() == [1, 1, 1, 1]
    steps, metrics = algo.iterate(0)
    assert algo.x_axis == "gradient_steps" and steps == 3
    assert metrics["charts/dataset_return"] == 8.5 and metrics["charts/dataset_pairs"] == 4
    assert algo.optimizer.state_dict()["state"][0]["step"].item() == 3


def angle_expert(obs: np.ndarray) -> np.ndarray:
    """Push towards where the pole falls: a fair CartPole controller."""
    return (obs[:, 2] + obs[:, 3] > 0).astype(np.int64)


def test_bc_learns_the_labelling_of_a_dataset(tmp_path):
    data, _ = datasets.collect(SHORT_CARTPOLE, None, episodes=40, seed=0, num_envs=4)
    data["actions"] = angle_expert(data["observations"])
    datasets.save(tmp_path / "d.npz", data)
    algo = build(make_config("algo=bc", f"algo.dataset={tmp_path / 'd.npz'}", "algo.S=300", "algo.lr=0.01"))
    first = algo.iterate(0)[1]["losses/policy_loss"]
    last = algo.iterate(300)[1]["losses/policy_loss"]
    assert last < first and (algo.act(data["observations"]) == data["actions"]).mean() > 0.95


class CountingExpert:
    """An expert loader for `build(..., load_policy=...)` that counts the expert's calls."""

    def __init__(self, policy=angle_expert):
        self.policy, self.loaded, self.calls = policy, [], 0

    def __call__(self, run_dir: str, which: str):
        self.loaded.append((run_dir, which))
        return self.act

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.policy(obs)


DAGGER = ("algo=dagger", "algo.expert=RUN", "algo.N=40", "algo.num_envs=2", "algo.S=5", "algo.batch_size=16")


def test_dagger_aggregates_the_experts_labels_of_the_states_visited():
    expert = CountingExpert()
    algo = build(make_config(*DAGGER), load_policy=expert)
    assert expert.loaded == [("RUN", "final")] and expert.calls == 1  # a probe of its spaces
    first, _ = algo.iterate(0)
    assert expert.calls == 1 + 20 + 1  # the first round the expert drives (T = 20 steps), then labels
    second, metrics = algo.iterate(first)
    assert expert.calls == 22 + 1  # later rounds it only labels: the learner drives
    assert len(algo.states) == first + second == metrics["charts/expert_labels"]
    assert torch.equal(algo.expert_actions, torch.as_tensor(angle_expert(algo.states.numpy())))
    assert algo.optimizer.state_dict()["state"][0]["step"].item() == 2 * 5

    restored = build(make_config(*DAGGER), load_policy=CountingExpert())
    restored.load_state_dict(algo.state_dict())
    assert restored.rounds == 2 and torch.equal(restored.states, algo.states)


@pytest.mark.parametrize(
    "expert, allowed",
    [
        (lambda obs: obs[:, :1], "a run whose actions are this env's Discrete(2)"),
        (lambda obs: torch.zeros(3, 3) @ torch.as_tensor(obs).T, "a run on an env with this env's observations"),
    ],
    ids=["Box actions", "other observations"],
)
def test_an_expert_that_does_not_fit_the_env_is_one_config_error(expert, allowed):
    with pytest.raises(ConfigError, match=re.escape(f"algo.expert='RUN' is not allowed: {allowed}")):
        build(make_config(*DAGGER), load_policy=CountingExpert(expert))


def test_a_dagger_run_logs_its_expert_labels_against_env_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "load_policy", lambda run_dir, which="final", device="cpu": angle_expert)
    cfg = make_config(*DAGGER, "total_timesteps=160", "eval.every=80", "eval.episodes=2", "log.every=40",
                      "log.progress=none")
    runner.train(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    labels = read_scalars(tmp_path / "run")["charts/expert_labels"]
    assert summary["x_axis"] == "env_steps" and [step for step, _ in labels][-1] == summary["steps"]
    assert [step == value for step, value in labels] == [True] * len(labels)  # every env step is labelled


@pytest.mark.parametrize(
    "overrides, allowed",
    [
        (["algo=bc"], "algo.dataset=None is not allowed: a dataset to imitate"),
        (["algo=bc", "algo.dataset=x.npz", "algo.filter_top=0"], "algo.filter_top=0 is not allowed: a number in (0, 1]"),
        (["algo=dagger"], "algo.expert=None is not allowed: a finished run's directory"),
        ([*DAGGER, "algo.N=41"], "algo.N=41 is not allowed: a multiple of algo.num_envs (2)"),
    ],
)
def test_bad_imitation_config_is_one_config_error(overrides, allowed):
    with pytest.raises(ConfigError) as err:
        build(make_config(*overrides))
    assert allowed in str(err.value)


def test_collect_records_whole_episodes_each_in_one_piece():
    data, returns = datasets.collect(SHORT_CARTPOLE, None, episodes=10, seed=0, num_envs=4)
    ids, ends = data["episode_ids"], data["terminated"] | data["truncated"]
    assert list(np.unique(ids)) == list(range(10)) and (np.diff(ids) >= 0).all()
    assert np.array_equal(ends, np.append(ids[1:] != ids[:-1], True))  # each episode ends at its last row only
    same_episode = ids[1:] == ids[:-1]
    assert np.array_equal(data["next_observations"][:-1][same_episode], data["observations"][1:][same_episode])
    assert np.allclose(returns, np.bincount(ids, weights=data["rewards"]))

    cut, whole = datasets.collect(SHORT_CARTPOLE, None, transitions=50, seed=0, num_envs=4)
    assert len(cut["rewards"]) == 50 and cut["truncated"][-1]  # the cut ends the last episode
    assert len(whole) == cut["episode_ids"][-1]  # the last one, cut short, is not a whole episode
    assert np.allclose(whole, np.bincount(cut["episode_ids"], weights=cut["rewards"])[:-1])


def old_style_dataset() -> tuple[dict, np.ndarray]:
    """Rows as files written before episode_ids were: parallel envs' steps interleaved, the last
    episodes cut without a flag. Returns (the arrays, each row's true episode)."""
    collector = RolloutCollector(make_vec_env(SHORT_CARTPOLE, 4), seed=0)
    space = gym.spaces.Discrete(2, seed=0)
    rollout = collector.collect(lambda obs: (a := np.array([space.sample() for _ in obs]), a), T=60)
    rows = from_rollout(rollout)
    ended = rollout.terminated | rollout.truncated
    episode = np.cumsum(np.vstack([np.zeros((1, 4), bool), ended[:-1]]), axis=0) + 100 * np.arange(4)
    data = {
        "observations": rows.obs,
        "actions": rows.actions,
        "rewards": rows.rewards,
        "next_observations": rows.next_obs,
        "terminated": rows.terminated,
        "truncated": rollout.truncated[rollout.valid],
    }
    return data, episode[rollout.valid]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1]
    return pairs == len(np.unique(a)) == len(np.unique(b))


def test_episode_ids_survive_a_round_trip_and_files_without_them_get_their_episodes_back(tmp_path):
    data, _ = datasets.collect(SHORT_CARTPOLE, None, episodes=6, seed=0, num_envs=4)
    datasets.save(tmp_path / "new.npz", data)
    assert np.array_equal(datasets.load(tmp_path / "new.npz", OBS, ACTIONS)["episode_ids"], data["episode_ids"])

    datasets.save(tmp_path / "contiguous.npz", {k: v for k, v in data.items() if k != "episode_ids"})
    assert np.array_equal(datasets.load(tmp_path / "contiguous.npz", OBS, ACTIONS)["episode_ids"], data["episode_ids"])

    old, truth = old_style_dataset()
    datasets.save(tmp_path / "old.npz", old)
    assert "episode_ids" not in np.load(tmp_path / "old.npz").files
    loaded = datasets.load(tmp_path / "old.npz", OBS, ACTIONS)
    assert same_partition(loaded["episode_ids"], truth) and len(np.unique(truth)) > 8


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished (tiny) BC run on CartPole, to collect from."""
    folder = tmp_path_factory.mktemp("run")
    data, _ = datasets.collect(SHORT_CARTPOLE, None, episodes=8, seed=0, num_envs=4)
    data["actions"] = angle_expert(data["observations"])
    datasets.save(folder / "d.npz", data)
    cfg = make_config("algo=bc", f"algo.dataset={folder / 'd.npz'}", "algo.S=50", "total_timesteps=50",
                      "eval.every=0", "eval.episodes=1", "log.progress=none")
    runner.train(cfg, folder / "run")
    return folder / "run"


def test_collect_mixes_sources_and_prints_each_ones_return(finished_run, tmp_path, capsys):
    out = tmp_path / "mixed.npz"
    collect.main(["--out", str(out), "--policy", str(finished_run), "--policy", "random", "--episodes", "2,3",
                  "--epsilon", "0.5,0"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{finished_run} (epsilon 0.5): ") and printed[1].startswith("random: ")
    assert "in 5 episodes" in printed[2] and "mean return" in printed[2]
    data = datasets.load(out, OBS, ACTIONS)
    assert list(np.unique(data["episode_ids"])) == list(range(5))

    bad = {
        "--episodes 1,2,3": "--episodes='1,2,3' is not allowed: an integer in [1, 1000000000], or 2 of them",
        "env=acrobot": "overrides='env=acrobot' is not allowed: none with --policy RUN",
    }
    for args, message in bad.items():
        with pytest.raises(SystemExit):
            collect.main(["--out", str(tmp_path / "x.npz"), "--policy", str(finished_run), "--policy", "random",
                          *(["--episodes", "1"] if "episodes" not in args else []), *args.split()])
        assert message in capsys.readouterr().err


def test_minari_datasets_round_trip_and_ones_from_its_data_collector_load(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari", reason="the minari extra is not installed: pip install 'rlrun[minari]'")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    data, _ = datasets.collect(SHORT_CARTPOLE, None, episodes=3, seed=0, num_envs=2)
    datasets.save("minari:rlrun/written-v0", data, SHORT_CARTPOLE)
    loaded = datasets.load("minari:rlrun/written-v0", OBS, ACTIONS)
    for key in datasets.FIELDS:
        np.testing.assert_array_equal(loaded[key], data[key], err_msg=key)

    env = minari.DataCollector(gym.make("CartPole-v1", max_episode_steps=20))
    for seed in range(2):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.create_dataset("rlrun/collected-v0")
    collected = datasets.load("minari:rlrun/collected-v0", OBS, ACTIONS)
    assert len(np.unique(collected["episode_ids"])) == 2
    assert (collected["terminated"] | collected["truncated"]).sum() == 2

    with pytest.raises(ConfigError, match="the id of a local Minari dataset"):
        datasets.load("minari:rlrun/absent-v0", OBS, ACTIONS)
