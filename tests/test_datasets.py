"""The offline dataset format: collection, round trip, and one clear error for each malformed file."""

from __future__ import annotations

import errno

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

from rlrun import collect, datasets
from rlrun.config import ConfigError
from tests.conftest import make_config

CARTPOLE = gym.make("CartPole-v1")
OBS, ACTIONS = CARTPOLE.observation_space, CARTPOLE.action_space


@pytest.fixture(scope="module")
def data():
    """300 random transitions on CartPole cut at 20 steps, so both episode ends occur."""
    env_cfg = make_config("env=cartpole", "env.max_episode_steps=20").env
    data, returns = datasets.collect(env_cfg, None, 300, epsilon=0.0, seed=0, num_envs=4)
    assert len(returns) > 0
    return data


def test_collection_has_the_format_and_keeps_terminal_and_time_limit_apart(data):
    assert set(data) == set(datasets.FIELDS) and len(data["rewards"]) == 300
    assert data["terminated"].any() and data["truncated"].any()
    assert not (data["terminated"] & data["truncated"]).any()
    assert data["observations"].dtype == np.float32 and data["actions"].dtype.kind == "i"


def test_round_trip_gives_back_the_same_arrays(data, tmp_path):
    path = tmp_path / "d.npz"
    datasets.save(path, data)
    loaded = datasets.load(path, OBS, ACTIONS)
    for key in datasets.FIELDS:
        np.testing.assert_array_equal(loaded[key], data[key])
        assert loaded[key].dtype == data[key].dtype


def test_truncated_rows_are_bootstrapped_and_terminated_rows_are_not(data):
    rows = datasets.to_transitions(data)
    assert np.array_equal(rows.terminated, data["terminated"])
    assert not rows.terminated[data["truncated"]].any()


def broken(data, **changes):
    return {**data, **changes}


MALFORMED = {
    "missing array": (lambda d: {k: v for k, v in d.items() if k != "rewards"}, "missing rewards"),
    "wrong observation shape": (lambda d: broken(d, observations=d["observations"][:, :3]), "observations of shape"),
    "rows of different lengths": (lambda d: broken(d, rewards=d["rewards"][:-1]), "of shape"),
    "float actions for Discrete": (lambda d: broken(d, actions=d["actions"].astype(np.float32)), "integer dtype"),
    "integer observations for Box": (
        lambda d: broken(d, observations=d["observations"].astype(np.int64)), "floating dtype"),
    "int terminated": (lambda d: broken(d, terminated=d["terminated"].astype(np.int8)), "bool dtype"),
    "actions outside the env's action space": (lambda d: broken(d, actions=d["actions"] + 2), "actions in [0, 2)"),
    "Box actions for a Discrete env": (
        lambda d: broken(d, actions=np.zeros((300, 1), np.float32)), "actions of shape (300,)"),
    "terminated and truncated at once": (
        lambda d: broken(d, truncated=d["terminated"].copy()), "not both"),
    "empty": (lambda d: {k: v[:0] for k, v in d.items()}, "at least one transition"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_dataset_is_one_config_error_naming_the_problem(data, tmp_path, case):
    make, expected = MALFORMED[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **make(data))
    with pytest.raises(ConfigError) as err:
        datasets.load(path, OBS, ACTIONS)
    assert err.value.key == "algo.dataset" and str(path) in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("damage", ["cut in half", "not a zip file"])
def test_a_truncated_or_corrupt_file_is_one_config_error(data, tmp_path, damage):
    path = tmp_path / "bad.npz"
    datasets.save(path, data)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "cut in half" else b"not an npz" * 100)
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        datasets.load(path, OBS, ACTIONS)


def test_a_missing_path_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no file there"):
        datasets.load(tmp_path / "nope.npz", OBS, ACTIONS)


def test_collect_command_writes_a_loadable_file_and_refuses_bad_arguments(tmp_path, capsys):
    out = tmp_path / "random.npz"
    collect.main(["--out", str(out), "--transitions", "200", "env=acrobot"])
    assert "wrote 200 transitions" in capsys.readouterr().out
    acrobot = gym.make("Acrobot-v1")
    assert len(datasets.load(out, acrobot.observation_space, acrobot.action_space)["rewards"]) == 200
    for bad in (["--policy", str(tmp_path)], ["--epsilon", "1.5"], ["env=nope"]):
        with pytest.raises(SystemExit) as exit_:
            collect.main(["--out", str(tmp_path / "x.npz"), *bad])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.startswith("rlrun-collect: error: ")
    assert not (tmp_path / "x.npz").exists()


def test_a_npy_file_under_an_npz_name_is_one_config_error(tmp_path):
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((5, 4)))
    with pytest.raises(ConfigError, match=r"an \.npz file of named arrays \(this is a single \.npy array"):
        datasets.load(path, OBS, ACTIONS)


@pytest.mark.parametrize("field", ["rewards", "observations", "episode_ids"])
def test_a_0d_array_in_a_dataset_is_one_config_error(data, tmp_path, field):
    path = tmp_path / "scalar.npz"
    np.savez(path, **broken(data, **{field: np.asarray(data[field]).flat[0]}))
    with pytest.raises(ConfigError, match=f"{field} with one row per transition \\(it is a 0-d array\\)"):
        datasets.load(path, OBS, ACTIONS)


@pytest.mark.parametrize(
    "out,allowed",
    [
        ("no_such_folder/d.npz", "a path in an existing folder rlrun-collect can write to (No such file or directory)"),
        (".", "a file path for the .npz dataset (this is a folder)"),
    ],
)
def test_collect_checks_its_out_path_before_collecting(tmp_path, monkeypatch, capsys, out, allowed):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(collect, "collect", lambda *a, **k: pytest.fail("collected before checking --out"))
    with pytest.raises(SystemExit) as exit_:
        collect.main(["--out", out, "--transitions", "100"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"rlrun-collect: error: --out='{out}' is not allowed: {allowed}"]


@pytest.mark.parametrize(
    "amount,allowed",
    [
        (10**12, "an integer in [1, 1000000000], or 1 of them"),
        (10**9, "a value that fits in this machine's memory (it needs about 83.8 GiB"),  # 45 bytes each, twice
    ],
)
def test_collect_bounds_the_transitions_it_is_asked_for(tmp_path, monkeypatch, capsys, amount, allowed):
    monkeypatch.setattr("rlrun.memory.available_bytes", lambda: 2**30)
    monkeypatch.setattr(collect, "collect", lambda *a, **k: pytest.fail("collected what does not fit"))
    with pytest.raises(SystemExit) as exit_:
        collect.main(["--out", str(tmp_path / "d.npz"), "--transitions", str(amount)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith(f"rlrun-collect: error: --transitions='{amount}' is not allowed: {allowed}")


def test_collect_from_a_run_builds_its_policy_from_the_model_files_own_config(tmp_path, capsys):
    """The run's .hydra/config.yaml may say otherwise (edited, or overwritten): the model file's config
    is the one its networks were made with."""
    from rlrun import checkpoint
    from rlrun.build import build

    cfg = make_config("algo=reinforce", "algo.hidden_sizes=[8]", "env.max_episode_steps=30")
    algo = build(cfg)
    checkpoint.save_model(tmp_path / checkpoint.MODEL_FILE, algo.networks(), OmegaConf.to_container(cfg), 0)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(make_config("algo=reinforce", "algo.hidden_sizes=[64,64]"), tmp_path / ".hydra" / "config.yaml")
    out = tmp_path / "d.npz"
    collect.main(["--out", str(out), "--policy", str(tmp_path), "--episodes", "2"])
    assert "wrote" in capsys.readouterr().out
    assert datasets.load(out, OBS, ACTIONS)["rewards"].shape[0] <= 2 * 30  # the model's env and its time limit


def test_a_full_disk_while_writing_the_dataset_is_one_line_and_leaves_no_file(tmp_path, monkeypatch, capsys):
    def full(f, **arrays):
        f.write(b"PK\x03\x04 the first bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    out = tmp_path / "d.npz"
    with pytest.raises(SystemExit) as exit_:
        collect.main(["--out", str(out), "--transitions", "50"])
    assert exit_.value.code == 2
    expected = (
        f"rlrun-collect: error: --out='{out}' is not allowed: a path rlrun-collect can write the dataset to "
        "(No space left on device)"
    )
    assert capsys.readouterr().err.splitlines() == [expected]
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor its temporary file
