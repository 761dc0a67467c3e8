"""Task distributions: the lecture's task T_i = {S_i, A_i, p_i(s_1), p_i(s'|s,a), r_i(s,a)} as env parameters.

A task is a dict of parameters of one env: CartPole's pole length, mass and push force and
Pendulum's g, m and l change p(s'|s,a); CartPole's `init_range` changes p(s_1); the point mass's
goal changes r. A distribution (the `task` config group, configs/task/) takes one of two forms:

    ranges   per parameter a `train` range [low, high], drawn uniformly, and an optional `test`
             range whose part outside the train range holds the held-out values (train on a middle
             range, test on the extremes on either side of it)
    named    a `train` and a held-out `test` list of named tasks, each {parameter: value}

Training envs (`wrap`) draw a train task at every reset, from a generator of the run's seed and
the env's slot. Evaluation takes fixed task lists (`eval_tasks`) and envs fixed to one of them
(`wrap_fixed`). `observe` says what the policy sees of the task: nothing, its parameters
normalised by the train range, or the one-hot index of a named train task.

numpy only: the config rules (`RULES`, `check`) import without torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from omegaconf import DictConfig, ListConfig, OmegaConf

from rlrun.config import ConfigError, Rule, choice, integer, number, optional, text
from rlrun.gym_envs.point_mass import PointMassEnv

OBSERVE = ("none", "params", "onehot")
SPLITS = ("train", "test")
_TRAINING_STREAM = 1  # first entropy word of training envs' task generators
_EVAL_STREAM = 2  # first entropy word of the evaluation tasks' generator, which no run seed enters

Interval = tuple[float, float]


@dataclass(frozen=True)
class Task:
    """One task: a value per parameter, and its name when it comes from a named list."""

    params: dict[str, float]
    name: str | None = None


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_interval(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_is_number, value)) and value[0] <= value[1]


def _held_out(train: Interval, test: Interval) -> tuple[Interval, ...]:
    """The parts of `test` outside the open train interval (test values are drawn from them)."""
    (train_low, train_high), (test_low, test_high) = train, test
    below = (test_low, min(test_high, train_low)) if test_low < train_low else None
    above = (max(test_low, train_high), test_high) if test_high > train_high else None
    return tuple(piece for piece in (below, above) if piece is not None)


def _is_ranges(value: Any) -> bool:
    value = _plain(value)
    if not isinstance(value, dict) or not value:
        return False
    for spec in value.values():
        if not isinstance(spec, dict) or "train" not in spec or set(spec) - set(SPLITS):
            return False
        if not all(_is_interval(interval) for interval in spec.values()):
            return False
        if "test" in spec and not _held_out(tuple(spec["train"]), tuple(spec["test"])):
            return False
    return True


def _is_named(value: Any) -> bool:
    value = _plain(value)
    if not isinstance(value, dict) or set(value) != set(SPLITS):
        return False
    lists = [value[split] for split in SPLITS]
    if not all(isinstance(tasks, dict) and tasks for tasks in lists) or set(lists[0]) & set(lists[1]):
        return False
    every_task = [params for tasks in lists for params in tasks.values()]
    if not all(isinstance(params, dict) and params and all(map(_is_number, params.values())) for params in every_task):
        return False
    return all(set(params) == set(every_task[0]) for params in every_task)


# Keys of the `task` config group; `check` adds the rules that relate keys to each other.
RULES: dict[str, Rule] = {
    "name": text(),
    "observe": choice(*OBSERVE),
    "ranges": optional(
        Rule(
            _is_ranges,
            "a mapping parameter: {train: [low, high], test: [low, high]} with low <= high,"
            " test optional and reaching outside train",
        )
    ),
    "named": optional(
        Rule(
            _is_named,
            "{train: {name: {parameter: value}}, test: {...}}: both lists non-empty, names distinct,"
            " every task setting the same parameters",
        )
    ),
    "eval_tasks": optional(integer(1)),
}


def check(task_cfg: Mapping | DictConfig) -> None:
    """Raise the ConfigError of the first bad key of a `task` config, keys named `task.<key>`."""
    cfg = _plain(task_cfg)
    for key, rule in RULES.items():
        rule(f"task.{key}", cfg.get(key))
    if (cfg["ranges"] is None) == (cfg["named"] is None):
        raise ConfigError("task.ranges", cfg["ranges"], "parameter ranges, or null when task.named lists the tasks")
    if cfg["ranges"] is not None and cfg["eval_tasks"] is None:
        raise ConfigError("task.eval_tasks", None, "an integer >= 1: how many fixed tasks each split evaluates")
    if cfg["named"] is not None and cfg["eval_tasks"] is not None:
        raise ConfigError("task.eval_tasks", cfg["eval_tasks"], "null for named tasks: each named task is evaluated")
    if cfg["observe"] == "onehot" and cfg["named"] is None:
        raise ConfigError("task.observe", "onehot", "none or params for ranges (onehot indexes the tasks of task.named)")


@dataclass(frozen=True)
class RangeDistribution:
    """Each parameter uniform over its train range, or over the held-out parts of its test range."""

    train: dict[str, Interval]
    test: dict[str, tuple[Interval, ...]]
    eval_count: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.train)

    def sample(self, rng: np.random.Generator, split: str) -> Task:
        pieces = {name: (interval,) for name, interval in self.train.items()} if split == "train" else self.test
        return Task({name: _uniform(rng, pieces[name]) for name in self.names})

    def fixed_tasks(self, split: str) -> list[Task]:
        rng = np.random.default_rng([_EVAL_STREAM, SPLITS.index(split)])
        return [self.sample(rng, split) for _ in range(self.eval_count)]

    def train_extent(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([low for low, _ in self.train.values()]), np.array([high for _, high in self.train.values()])

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest value of each parameter over both splits."""
        every = [[*self.test[name], self.train[name]] for name in self.names]
        low = [min(piece[0] for piece in pieces) for pieces in every]
        return np.array(low), np.array([max(piece[1] for piece in pieces) for pieces in every])


def _uniform(rng: np.random.Generator, pieces: tuple[Interval, ...]) -> float:
    """A value uniform over the union of `pieces` (disjoint intervals)."""
    u = rng.uniform(0.0, sum(high - low for low, high in pieces))
    for low, high in pieces:
        if u <= high - low:
            return float(low + u)
        u -= high - low
    return float(pieces[-1][1])


@dataclass(frozen=True)
class NamedDistribution:
    """A train task drawn uniformly from the named train list; test tasks are the named test list."""

    train: tuple[Task, ...]
    test: tuple[Task, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.train[0].params)

    def sample(self, rng: np.random.Generator, split: str) -> Task:
        tasks = self.fixed_tasks(split)
        return tasks[int(rng.integers(len(tasks)))]

    def fixed_tasks(self, split: str) -> list[Task]:
        return list(self.train if split == "train" else self.test)

    def _values(self, tasks: tuple[Task, ...]) -> np.ndarray:
        return np.array([[task.params[name] for name in self.names] for task in tasks])

    def train_extent(self) -> tuple[np.ndarray, np.ndarray]:
        values = self._values(self.train)
        return values.min(axis=0), values.max(axis=0)

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        values = self._values(self.train + self.test)
        return values.min(axis=0), values.max(axis=0)

    def onehot(self, task: Task) -> np.ndarray:
        """One-hot over the train tasks; a held-out test task, unknown to the policy, is all zeros."""
        vector = np.zeros(len(self.train))
        names = [train_task.name for train_task in self.train]
        if task.name in names:
            vector[names.index(task.name)] = 1.0
        return vector


Distribution = RangeDistribution | NamedDistribution


def distribution(task_cfg: Mapping | DictConfig) -> Distribution:
    """The distribution a `task` config describes; ConfigError if the config is not valid."""
    check(task_cfg)
    cfg = _plain(task_cfg)
    if cfg["named"] is not None:
        named = {
            split: tuple(
                Task({name: float(v) for name, v in params.items()}, task_name)
                for task_name, params in cfg["named"][split].items()
            )
            for split in SPLITS
        }
        return NamedDistribution(named["train"], named["test"])
    train = {name: (float(spec["train"][0]), float(spec["train"][1])) for name, spec in cfg["ranges"].items()}
    test = {
        name: _held_out(train[name], tuple(map(float, spec["test"]))) if "test" in spec else (train[name],)
        for name, spec in cfg["ranges"].items()
    }
    return RangeDistribution(train, test, cfg["eval_tasks"])


def eval_tasks(task_cfg: Mapping | DictConfig) -> dict[str, list[Task]]:
    """Fixed `{"train": [...], "test": [...]}` tasks for evaluation: the same on every call and in every run.

    Ranges: `eval_tasks` tasks per split, drawn by a generator no run seed enters. Named: the lists.
    """
    dist = distribution(task_cfg)
    return {split: dist.fixed_tasks(split) for split in SPLITS}


def _set_attributes(env: gym.Env, params: Mapping[str, float]) -> None:
    for name, value in params.items():
        setattr(env, name, value)


def _set_cartpole(env: CartPoleEnv, params: Mapping[str, float]) -> None:
    _set_attributes(env, {name: value for name, value in params.items() if name != "init_range"})
    # CartPole's step reads these products, cached in its __init__, not the masses and length themselves
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


def _cartpole_start(params: Mapping[str, float]) -> dict[str, float]:
    # CartPole draws each state variable from U[low, high] when reset is given these options
    return {"low": -params["init_range"], "high": params["init_range"]} if "init_range" in params else {}


def _set_goal(env: PointMassEnv, params: Mapping[str, float]) -> None:
    env.set_goal((params.get("goal_x", env.goal[0]), params.get("goal_y", env.goal[1])))


def _no_options(params: Mapping[str, float]) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class Parameters:
    """The task parameters one env class accepts (with the values allowed) and how they reach it.

    `apply` sets them on the unwrapped env before a reset (dynamics, rewards); `reset_options` turns
    them into the options of that reset (initial-state distributions).
    """

    allowed: dict[str, Rule]
    apply: Callable[[gym.Env, Mapping[str, float]], None]
    reset_options: Callable[[Mapping[str, float]], dict[str, float]] = _no_options


_POSITIVE = number(0, low_open=True)
PARAMETERS: dict[type, Parameters] = {
    CartPoleEnv: Parameters(
        {**dict.fromkeys(("length", "masspole", "masscart", "force_mag", "gravity"), _POSITIVE), "init_range": number(0)},
        _set_cartpole,
        _cartpole_start,
    ),
    PendulumEnv: Parameters(dict.fromkeys(("g", "m", "l"), _POSITIVE), _set_attributes),
    PointMassEnv: Parameters({"goal_x": number(-1, 1), "goal_y": number(-1, 1)}, _set_goal),
}


def parameters_of(env: gym.Env, dist: Distribution) -> Parameters:
    """The Parameters of `env`'s unwrapped class; ConfigError unless it takes every value `dist` can give."""
    base = env.unwrapped
    known = [params for cls, params in PARAMETERS.items() if isinstance(base, cls)]
    if not known:
        envs = ", ".join(cls.__name__ for cls in PARAMETERS)
        raise ConfigError("task", type(base).__name__, f"a task distribution over an env of {envs}")
    parameters = known[0]
    key = "task.named" if isinstance(dist, NamedDistribution) else "task.ranges"
    lows, highs = dist.extent()
    for name, low, high in zip(dist.names, lows, highs, strict=True):
        if name not in parameters.allowed:
            raise ConfigError(key, name, f"parameters of {type(base).__name__}: {', '.join(parameters.allowed)}")
        for value in (float(low), float(high)):
            parameters.allowed[name](f"{key}.{name}", value)
    return parameters


class TaskWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Sets a task on the unwrapped env before every reset, and shows the policy what `observe` asks.

    The task is `fixed`, or a train task drawn from `task_rng`; `reset(seed=s)` restarts that
    generator from (`seed`, `slot`, s), as gymnasium restarts an env's own generator. The current
    task is `self.task` and `info["task"]` of each reset. Its state is plain attributes (generator,
    arrays, name), which a checkpoint of the env captures.
    observe=none: observations unchanged. params: the task's parameters, normalised so the train
    range spans [-1, 1], appended. onehot: the index among named train tasks, appended.
    """

    def __init__(
        self, env: gym.Env, dist: Distribution, observe: str, *, seed: int = 0, slot: int = 0, fixed: Task | None = None
    ):
        gym.utils.RecordConstructorArgs.__init__(self, dist=dist, observe=observe, seed=seed, slot=slot, fixed=fixed)
        gym.ObservationWrapper.__init__(self, env)
        self.parameters = parameters_of(env, dist)
        if fixed is not None and set(fixed.params) != set(dist.names):
            raise ValueError(f"task {fixed.params} sets other parameters than the distribution's {list(dist.names)}")
        self.distribution, self.observe, self.fixed = dist, observe, fixed
        self.seed_words = [_TRAINING_STREAM, seed, slot]
        self.task_rng = np.random.default_rng(self.seed_words)
        self.task_name: str | None = None
        self.task_values = np.full(len(dist.names), np.nan)  # set at every reset
        self.observation_space = self._extended_space(env.observation_space)
        self.task_features = np.zeros(self._feature_count())

    def _feature_count(self) -> int:
        counts = {"none": 0, "params": len(self.distribution.names), "onehot": len(self.distribution.train)}
        return counts[self.observe]

    def _extended_space(self, space: gym.Space) -> gym.Space:
        if self.observe == "none":
            return space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            allowed = "none for an env whose observation is not a flat Box"
            raise ConfigError("task.observe", self.observe, f"{allowed} (this env's: {type(space).__name__})")
        if self.observe == "params":
            low, high = (self._normalise(bound) for bound in self.distribution.extent())
        else:
            low, high = np.zeros(self._feature_count()), np.ones(self._feature_count())
        return gym.spaces.Box(
            np.concatenate([space.low, low]).astype(space.dtype),
            np.concatenate([space.high, high]).astype(space.dtype),
            dtype=space.dtype,
        )

    def _normalise(self, values: np.ndarray) -> np.ndarray:
        low, high = self.distribution.train_extent()
        half_width = (high - low) / 2
        # a parameter constant over the train tasks is shown as its offset from that value
        return (values - (low + high) / 2) / np.where(half_width > 0, half_width, 1.0)

    @property
    def task(self) -> Task:
        """The task of the current episode."""
        return Task(dict(zip(self.distribution.names, self.task_values.tolist(), strict=True)), self.task_name)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.task_rng = np.random.default_rng([*self.seed_words, seed])
        task = self.fixed if self.fixed is not None else self.distribution.sample(self.task_rng, "train")
        self.parameters.apply(self.env.unwrapped, task.params)
        self.task_name = task.name
        self.task_values = np.array([task.params[name] for name in self.distribution.names])
        if self.observe == "params":
            self.task_features = self._normalise(self.task_values)
        elif self.observe == "onehot":
            self.task_features = self.distribution.onehot(task)
        options = {**self.parameters.reset_options(task.params), **(options or {})}
        obs, info = super().reset(seed=seed, options=options or None)
        return obs, {**info, "task": dict(task.params)}

    def observation(self, observation):
        if self.observe == "none":
            return observation
        return np.concatenate([observation, self.task_features]).astype(self.observation_space.dtype)


def wrap(env: gym.Env, task_cfg: Mapping | DictConfig, seed: int, slot: int) -> TaskWrapper:
    """A training env: a train task drawn at every reset from a generator of (`seed`, `slot`)."""
    return TaskWrapper(env, distribution(task_cfg), _plain(task_cfg)["observe"], seed=seed, slot=slot)


def wrap_fixed(env: gym.Env, task_cfg: Mapping | DictConfig, task: Task) -> TaskWrapper:
    """An env whose every episode is `task` (one of `eval_tasks`), observed as `task_cfg.observe` says."""
    return TaskWrapper(env, distribution(task_cfg), _plain(task_cfg)["observe"], fixed=task)
