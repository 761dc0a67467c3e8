"""Offline datasets: the file format, its validation on load, episodes in it, and collecting one.

A dataset is one `.npz` file (numpy.savez_compressed) of N transitions:

    observations       [N, *obs_shape]     floating (Box observations) or integer (Discrete ones)
    actions            [N]                 integer in [0, n) (Discrete actions)
                       [N, *action_shape]  floating (Box actions)
    rewards            [N]                 floating
    next_observations  [N, *obs_shape]     like observations: the observation after the step
    terminated         [N]                 bool: the step reached a terminal state (no value after it)
    truncated          [N]                 bool: the episode was cut after the step (a time limit, or
                                           the end of the collection), so its value is bootstrapped
    episode_ids        [N]                 integer: the episode each transition belongs to (optional)

Files from `rlrun-collect` hold whole episodes, each one's rows together and in time order, with
`episode_ids`. Files without `episode_ids` (written before it existed) are read too: their episodes
are followed from row to row, since there the rows of parallel envs interleave (`derive_episode_ids`).

With the `minari` extra, `minari:DATASET_ID` names a local Minari dataset (Farama's offline-RL
format) wherever a path is taken; it is read and written as the same arrays.
"""

from __future__ import annotations

import os
import zipfile
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

from rlrun import envs
from rlrun.buffers import Transitions
from rlrun.config import ConfigError

REQUIRED_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated")
FIELDS = (*REQUIRED_FIELDS, "episode_ids")  # what a loaded dataset holds
MINARI_PREFIX = "minari:"


def save(path: str | Path, data: dict[str, np.ndarray], env_cfg: DictConfig | None = None) -> None:
    """Write `data` (the arrays of FIELDS; episode_ids may be left out) to an .npz file, or to a local
    Minari dataset for a `minari:ID` path (`env_cfg` then names the env in its metadata)."""
    if str(path).startswith(MINARI_PREFIX):
        _save_minari(str(path).removeprefix(MINARI_PREFIX), data, env_cfg)
    else:
        _save_npz(Path(path), {k: data[k] for k in FIELDS if k in data})


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Through a temporary name, so a failed write (a full disk) leaves no file that looks like a
    dataset; `.npz` is added to a name without it, as numpy does."""
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load(path: str | Path, obs_space: gym.Space, action_space: gym.Space, key: str = "algo.dataset") -> dict:
    """The dataset at `path` (.npz or `minari:ID`), checked against the env's spaces, with every array
    of FIELDS (episode_ids derived when the file has none); any problem is one ConfigError."""

    def bad(what: str) -> ConfigError:
        return ConfigError(key, str(path), what)

    if str(path).startswith(MINARI_PREFIX):
        data = _load_minari(str(path).removeprefix(MINARI_PREFIX), bad)
    else:
        data = _load_npz(Path(path), bad)
    check(data, obs_space, action_space, bad)
    if "episode_ids" not in data:
        data["episode_ids"] = derive_episode_ids(data)
    return data


def _load_npz(path: Path, bad: Callable[[str], ConfigError]) -> dict:
    if not path.is_file():
        raise bad("an existing .npz dataset file (no file there)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # np.load reads a .npy by its content, whatever its name
            raise bad("an .npz file of named arrays (this is a single .npy array; write it with numpy.savez)")
        with loaded as npz:
            missing = [k for k in REQUIRED_FIELDS if k not in npz.files]
            if missing:
                raise bad(f"a dataset with the arrays {', '.join(REQUIRED_FIELDS)} (missing {', '.join(missing)})")
            return {k: npz[k] for k in FIELDS if k in npz.files}
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise bad(f"a readable .npz file (it is truncated or corrupt: {err})") from None


def _minari(bad: Callable[[str], ConfigError]):
    try:
        import minari
    except ImportError:
        raise bad("a .npz file, or install the minari extra first: pip install 'rlrun[minari]'") from None
    return minari


def _load_minari(dataset_id: str, bad: Callable[[str], ConfigError]) -> dict:
    """A local Minari dataset's episodes as rows; an episode that ends without a flag was cut, so
    its last row is marked truncated."""
    minari = _minari(bad)
    try:
        dataset = minari.load_dataset(dataset_id)
    except (OSError, ValueError) as err:
        raise bad(f"the id of a local Minari dataset ({err})") from None
    parts = []
    for episode in dataset.iterate_episodes():
        observations = np.asarray(episode.observations)
        steps = len(episode.rewards)
        truncated = np.asarray(episode.truncations, dtype=bool).copy()
        terminated = np.asarray(episode.terminations, dtype=bool)
        truncated[-1] |= not terminated[-1]
        parts.append(
            {
                "observations": observations[:-1],
                "actions": np.asarray(episode.actions),
                "rewards": np.asarray(episode.rewards, dtype=np.float32),
                "next_observations": observations[1:],
                "terminated": terminated,
                "truncated": truncated & ~terminated,
                "episode_ids": np.full(steps, episode.id, dtype=np.int64),
            }
        )
    if not parts:
        raise bad("a Minari dataset with at least one episode")
    return {k: np.concatenate([part[k] for part in parts]) for k in FIELDS}


def _save_minari(dataset_id: str, data: dict, env_cfg: DictConfig | None) -> None:
    """Each episode as a Minari episode buffer; the env (its id, kwargs and time limit) goes in the metadata."""

    def bad(what: str) -> ConfigError:
        return ConfigError("--out", MINARI_PREFIX + dataset_id, what)

    minari = _minari(bad)
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for number, episode in enumerate(np.unique(data["episode_ids"])):
        rows = data["episode_ids"] == episode
        buffers.append(
            EpisodeBuffer(
                id=number,
                observations=np.concatenate([data["observations"][rows], data["next_observations"][rows][-1:]]),
                actions=data["actions"][rows],
                rewards=data["rewards"][rows],
                terminations=data["terminated"][rows],
                truncations=data["truncated"][rows],
                infos={},
            )
        )
    env = envs.make_env(env_cfg) if env_cfg is not None else None
    try:
        minari.create_dataset_from_buffers(dataset_id, buffers, env=env, algorithm_name="rlrun-collect")
    except ValueError as err:
        raise bad(f"a new Minari dataset id ({err})") from None
    finally:
        if env is not None:
            env.close()


def check(data: dict, obs_space: gym.Space, action_space: gym.Space, bad: Callable[[str], ConfigError]) -> None:
    """Shapes, dtypes and value ranges against the env's observation and action spaces."""
    scalar = next((name for name, array in data.items() if np.ndim(array) == 0), None)
    if scalar is not None:
        raise bad(f"{scalar} with one row per transition (it is a 0-d array)")
    n = len(data["rewards"])
    if n == 0:
        raise bad("a dataset with at least one transition")
    discrete_obs = isinstance(obs_space, gym.spaces.Discrete)
    discrete_actions = isinstance(action_space, gym.spaces.Discrete)
    expected = {
        "observations": ((n, *obs_space.shape), "integer" if discrete_obs else "floating"),
        "next_observations": ((n, *obs_space.shape), "integer" if discrete_obs else "floating"),
        "actions": ((n, *action_space.shape), "integer" if discrete_actions else "floating"),
        "rewards": ((n,), "floating"),
        "terminated": ((n,), "bool"),
        "truncated": ((n,), "bool"),
        "episode_ids": ((n,), "integer"),
    }
    kinds = {"integer": np.integer, "floating": np.floating, "bool": np.bool_}
    for name, (shape, kind) in expected.items():
        if name not in data:  # only episode_ids may be absent (load checks the rest are there)
            continue
        array = data[name]
        if array.shape != shape:
            raise bad(f"{name} of shape {shape} for this env (it has {array.shape})")
        if not np.issubdtype(array.dtype, kinds[kind]):
            raise bad(f"{name} of a {kind} dtype (it has {array.dtype})")
    if discrete_actions and (data["actions"].min() < 0 or data["actions"].max() >= action_space.n):
        raise bad(f"actions in [0, {action_space.n}) for the env's {envs.describe_space(action_space)} actions")
    if discrete_obs and (data["observations"].min() < 0 or data["observations"].max() >= obs_space.n):
        raise bad(f"observations in [0, {obs_space.n}) for the env's {envs.describe_space(obs_space)} observations")
    if (data["terminated"] & data["truncated"]).any():
        raise bad("transitions that are terminated or truncated, not both")


def derive_episode_ids(data: dict) -> np.ndarray:
    """Episode ids for a dataset without them, numbered in order of first row.

    A row continues the oldest open episode whose next observation is the row's observation (rows
    of parallel envs interleave in such files, so the previous row is not enough), else it starts
    an episode; an episode closes at a terminated or truncated row. Exact for continuous
    observations; where two open episodes wait on the same state (Discrete observations) they may
    be spliced at it, which still gives trajectories the env could have produced.
    """
    n = len(data["rewards"])
    ids = np.empty(n, dtype=np.int64)
    ended = data["terminated"] | data["truncated"]
    observations, next_observations = data["observations"], data["next_observations"]
    waiting: dict[bytes, deque[int]] = {}
    episodes = 0
    for row in range(n):
        queue = waiting.get(observations[row].tobytes())
        if queue:
            ids[row] = queue.popleft()
        else:
            ids[row], episodes = episodes, episodes + 1
        if not ended[row]:
            waiting.setdefault(next_observations[row].tobytes(), deque()).append(int(ids[row]))
    return ids


def episode_returns(data: dict) -> tuple[np.ndarray, np.ndarray]:
    """(the dataset's episode ids, ascending; each episode's undiscounted return)."""
    ids, rows_episode = np.unique(data["episode_ids"], return_inverse=True)
    return ids, np.bincount(rows_episode, weights=data["rewards"], minlength=len(ids))


def select_episodes(data: dict, ids: np.ndarray) -> dict:
    """The rows of the episodes `ids`, in their order in the dataset."""
    rows = np.isin(data["episode_ids"], ids)
    return {k: v[rows] for k, v in data.items()}


def concatenate(parts: Sequence[dict]) -> dict:
    """Datasets one after another, episode ids renumbered so that no two parts share one."""
    offset, ids = 0, []
    for part in parts:
        _, renumbered = np.unique(part["episode_ids"], return_inverse=True)
        ids.append(renumbered + offset)
        offset += renumbered.max() + 1 if len(renumbered) else 0
    joined = {k: np.concatenate([part[k] for part in parts]) for k in REQUIRED_FIELDS}
    joined["episode_ids"] = np.concatenate(ids).astype(np.int64)
    return joined


def to_transitions(data: dict) -> Transitions:
    """Replay-buffer rows; a truncated transition stays bootstrapped (not terminated)."""
    return Transitions(
        obs=data["observations"],
        actions=data["actions"],
        rewards=data["rewards"].astype(np.float32),
        next_obs=data["next_observations"],
        terminated=data["terminated"],
    )


def collect(
    env_cfg: DictConfig,
    act: Callable | None,
    transitions: int | None = None,
    epsilon: float = 0.0,
    seed: int = 0,
    num_envs: int = 8,
    episodes: int | None = None,
) -> tuple[dict, np.ndarray]:
    """Whole episodes of `act` (None: uniformly random actions), each action replaced by a random
    one with probability `epsilon`: `episodes` of them, or as many as make `transitions` steps, the
    last one cut there (marked truncated). Episodes are kept in the order they start, not the
    order they end, so that stopping at a count does not favour short ones.

    Returns (the dataset, each episode's rows together and numbered in order; the returns of its
    whole episodes).
    """
    if (transitions is None) == (episodes is None):
        raise ValueError("collect takes either transitions or episodes")
    env = envs.make_vec_env(env_cfg, num_envs)
    space = env.single_action_space
    space.seed(seed)
    rng = np.random.default_rng(seed)

    def behaviour(obs: np.ndarray) -> np.ndarray:
        random = np.array([space.sample() for _ in range(len(obs))])
        if act is None:
            return random
        chosen = np.asarray(act(obs))
        explore = rng.random(len(obs)) < epsilon
        return np.where(explore.reshape(-1, *[1] * (chosen.ndim - 1)), random.astype(chosen.dtype), chosen)

    def wants_another(started: int, recorded: int) -> bool:
        return started < episodes if episodes is not None else recorded < transitions

    obs, _ = env.reset(seed=seed)
    episode_of = np.full(num_envs, -1)  # the episode each sub-env records, by order of start; -1: none
    started = recorded = 0
    for slot in range(num_envs):
        if wants_another(started, 0):
            episode_of[slot], started = started, started + 1
    resetting = np.zeros(num_envs, dtype=bool)  # NEXT_STEP autoreset: this step only resets the sub-env
    rows = []  # per step, the recorded sub-envs' (obs, action, reward, next obs, terminated, truncated, episode)
    while (episode_of >= 0).any():
        actions = behaviour(obs)
        next_obs, rewards, terminated, truncated, _ = env.step(actions)
        kept = (episode_of >= 0) & ~resetting
        step = (obs, actions, rewards, next_obs, terminated, truncated & ~terminated, episode_of)
        rows.append([np.asarray(column)[kept] for column in step])
        recorded += int(kept.sum())
        for slot in np.flatnonzero(kept & (terminated | truncated)):
            episode_of[slot] = started if wants_another(started, recorded) else -1
            started += int(episode_of[slot] >= 0)
        resetting = terminated | truncated
        obs = next_obs
    env.close()
    columns = [np.concatenate(column) for column in zip(*rows)]
    order = np.argsort(columns[-1], kind="stable")  # each episode's rows together, still in time order
    data = {name: column[order] for name, column in zip(FIELDS, columns)}
    data["rewards"] = data["rewards"].astype(np.float32)
    ended = data["terminated"] | data["truncated"]
    if transitions is not None:
        data = {name: column[:transitions] for name, column in data.items()}
        ended = ended[:transitions]
        data["truncated"][-1] |= not data["terminated"][-1]  # the cut is the episode's end here
    ids, returns = episode_returns(data)
    whole = np.isin(ids, data["episode_ids"][ended])
    return data, returns[whole]
