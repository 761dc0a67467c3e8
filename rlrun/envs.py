"""Building gymnasium environments from the `env` config group, and checking one can run before training.

Every function here that builds an env first refuses an id naming a module to import (`module:Env-v0`)
unless `env.allow_import` is true, so a config replayed from a checkpoint cannot import code either.
`check_env` is the one check a run makes before building its algorithm: the env builds, resets and
takes a step, its observations are ones rlrun encodes, and each keyword argument has the type of the
constructor's default for it; every failure is one ConfigError naming the key the user set.

With a `task` config (rlrun.tasks) every env a run trains on is a TaskWrapper: each slot draws its
task at every reset from a generator of the run's seed and the slot's index.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator
from gymnasium.envs.toy_text.frozen_lake import MAPS, FrozenLakeEnv
from omegaconf import DictConfig, OmegaConf

import rlrun.gym_envs  # noqa: F401  (registers rlrun's own env ids: rlrun/BitFlip-v0, rlrun/PointMassGoal-v0, ...)
from rlrun import tasks
from rlrun.config import ConfigError, Rule, flag, integer, optional

# Keys of an env config that describe the env rather than being passed to `gymnasium.make`.
_OWN_KEYS = ("name", "id", "max_episode_steps", "kwargs", "allow_import", "backend")

_MAX_EPISODE_STEPS = optional(integer(1))
_ALLOW_IMPORT = flag()
BACKENDS = ("gymnasium", "envpool")

# Arguments `gymnasium.make` takes itself rather than passing them to the env's constructor.
_MAKE_OWN = frozenset(inspect.signature(gym.make).parameters) - {"id", "kwargs"}

# Values a constructor looks up in a table of its own, which its signature cannot tell.
_CHOICES: dict[Callable, dict[str, tuple[tuple, str]]] = {
    FrozenLakeEnv: {"map_name": ((*MAPS, None), f"one of {', '.join(MAPS)}, or null for a random 8x8 map")},
}


def _user_kwargs(env_cfg: DictConfig) -> dict[str, tuple[str, Any]]:
    """Constructor keyword -> (the key the user sets it with, its value); `env.kwargs` wins over `env.X`."""
    cfg = OmegaConf.to_container(env_cfg, resolve=True)
    extra = cfg.get("kwargs")
    if extra is not None and not (isinstance(extra, dict) and all(isinstance(k, str) for k in extra)):
        raise ConfigError("env.kwargs", extra, "null or a mapping of keyword arguments, e.g. env.kwargs={map_name: 8x8}")
    found = {k: (f"env.{k}", v) for k, v in cfg.items() if k not in _OWN_KEYS}
    found.update({k: (f"env.kwargs.{k}", v) for k, v in (extra or {}).items()})
    return found


def make_kwargs(env_cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments for `gymnasium.make`: the env's `kwargs` plus its other own keys."""
    steps = OmegaConf.select(env_cfg, "max_episode_steps", default=None)
    _MAX_EPISODE_STEPS("env.max_episode_steps", steps)
    kwargs = {name: value for name, (_, value) in _user_kwargs(env_cfg).items()}
    if steps is not None:
        kwargs["max_episode_steps"] = steps
    return kwargs


def env_id(env_cfg: DictConfig) -> str:
    """The registered gymnasium id to build.

    An id that names a module to import (`module:Env-v0`) is refused unless `env.allow_import` is true;
    then the module is imported here and the plain id returned, so gymnasium never imports anything.
    """
    if OmegaConf.is_missing(env_cfg, "id") or not env_cfg.id:
        raise ConfigError("env.id", "???", "a registered gymnasium id, e.g. env.id=LunarLander-v3")
    name = str(env_cfg.id)
    allow_import = OmegaConf.select(env_cfg, "allow_import", default=False)
    _ALLOW_IMPORT("env.allow_import", allow_import)
    if ":" not in name:
        _register_optional_envs(name)
        return name
    if not allow_import:
        raise ConfigError(
            "env.id",
            name,
            "a registered id without a module part (env.allow_import=true lets env.id name a module to import, "
            "which runs that module's code)",
        )
    module, _, plain = name.partition(":")
    try:
        importlib.import_module(module)
    except Exception as err:  # the user's own module: whatever it raises, the run cannot start
        raise ConfigError("env.id", name, f"an id whose module imports ({_first_line(err)})") from err
    return plain


# Installed env packages that register their ids only when imported, and rlrun's extra for each; imported
# here only for an id gymnasium does not know yet. These are packages the user installed, not a
# module named by a config value, so no env.allow_import is needed.
OPTIONAL_ENV_PACKAGES = {"gymnasium_robotics": "robotics"}  # FetchReach-v4, PointMaze_UMaze-v3, ...


def _register_optional_envs(name: str) -> None:
    if name in gym.registry:
        return
    os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo renders offscreen without a display (eval videos)
    for module in OPTIONAL_ENV_PACKAGES:
        try:
            # gymnasium_robotics prints a notice about its Adroit envs' versions on import
            with contextlib.redirect_stderr(io.StringIO()):
                package = importlib.import_module(module)
        except ImportError:
            continue
        gym.register_envs(package)


def _extras_hint() -> str:
    missing = [extra for module, extra in OPTIONAL_ENV_PACKAGES.items() if importlib.util.find_spec(module) is None]
    return "".join(f'; more ids come with pip install "rlrun[{extra}]"' for extra in missing)


# rlrun's extra per gymnasium env family: gymnasium's own hint asks for swig, but its box2d wheels need none.
ENV_EXTRAS = {"gymnasium.envs.box2d": "box2d"}


def _dependency_hint(name: str, err: Exception) -> str:
    spec = gym.spec(name) if name in gym.registry else None
    entry_point = str(spec.entry_point) if spec is not None else ""
    extra = next((e for package, e in ENV_EXTRAS.items() if entry_point.startswith(package)), None)
    if extra is None:
        return _first_line(err)
    return f'pip install "rlrun[{extra}]", or pip install -e ".[{extra}]" in a checkout; no swig needed'


@contextlib.contextmanager
def _gym_errors(name: str) -> Iterator[None]:
    """Turn gymnasium's errors about ids, dependencies and kwargs into one ConfigError line."""
    try:
        yield
    except (gym.error.DependencyNotInstalled, ImportError) as err:
        raise ConfigError("env.id", name, f"an env whose dependencies are installed ({_dependency_hint(name, err)})") from None
    except gym.error.Error as err:
        raise ConfigError("env.id", name, f"a registered gymnasium id ({_first_line(err)}){_extras_hint()}") from None
    except TypeError as err:
        raise ConfigError("env", name, f"keyword arguments that {name} accepts ({_first_line(err)})") from None


def make_env(env_cfg: DictConfig, **extra: Any) -> gym.Env:
    """One environment instance (evaluation, dynamic programming, video)."""
    name = env_id(env_cfg)
    kwargs = make_kwargs(env_cfg)
    with _gym_errors(name):
        return gym.make(name, **kwargs, **extra)


def backend(env_cfg: DictConfig, task_cfg: DictConfig | None = None) -> str:
    """The env config's `backend` (gymnasium when it has none), once it is one that can run this env:
    envpool needs the extra installed, an id of `envpool_vec.TERMINAL`, no keyword arguments and no tasks."""
    name = OmegaConf.select(env_cfg, "backend", default=None) or "gymnasium"
    if name not in BACKENDS:
        raise ConfigError("env.backend", name, " or ".join(BACKENDS))
    if name == "gymnasium":
        return name
    from rlrun.envpool_vec import TERMINAL

    if importlib.util.find_spec("envpool") is None:
        raise ConfigError(
            "env.backend", name, 'gymnasium, or envpool once installed: pip install "rlrun[envpool]" (Python >= 3.11)'
        )
    gym_id = env_id(env_cfg)
    if gym_id not in TERMINAL:
        raise ConfigError("env.backend", name, f"gymnasium for env.id={gym_id} (envpool runs {', '.join(TERMINAL)})")
    keys = [key for key, _ in _user_kwargs(env_cfg).values()]
    if keys:
        raise ConfigError("env.backend", name, f"gymnasium with {', '.join(keys)} (envpool's envs take no keyword arguments)")
    if task_cfg is not None:
        raise ConfigError("env.backend", name, "gymnasium with a task distribution (tasks wrap gymnasium envs)")
    return name


def make_vec_env(
    env_cfg: DictConfig,
    num_envs: int,
    task_cfg: DictConfig | None = None,
    seed: int = 0,
    backend_name: str | None = None,
) -> gym.vector.VectorEnv:
    """`num_envs` copies stepped as one batch, numpy-vectorised where gymnasium has it, or in an
    envpool pool where the config's `backend` says envpool (`backend_name="gymnasium"` overrides it:
    evaluation's envs).

    With `task_cfg`, copy i draws a train task at every reset from a generator of (`seed`, i)
    (`tasks.wrap`); the copies are then separate envs stepped in turn, since a numpy-vectorised
    env has no sub-env to set a task on.
    Autoreset is gymnasium's default NEXT_STEP: the step that ends an episode returns its final
    observation, and the following step resets that sub-env (its action is ignored).
    """
    if (backend_name or backend(env_cfg, task_cfg)) == "envpool":
        return _envpool_vec_env(env_cfg, num_envs)
    if task_cfg is not None:
        return gym.vector.SyncVectorEnv(
            [lambda slot=slot: tasks.wrap(make_env(env_cfg), task_cfg, seed, slot) for slot in range(num_envs)]
        )
    name = env_id(env_cfg)
    kwargs = make_kwargs(env_cfg)
    with _gym_errors(name):
        mode = "vector_entry_point" if gym.spec(name).vector_entry_point is not None else "sync"
        return gym.make_vec(name, num_envs=num_envs, vectorization_mode=mode, **kwargs)


def _envpool_vec_env(env_cfg: DictConfig, num_envs: int) -> gym.vector.VectorEnv:
    """The envpool pool of env_cfg's id with gymnasium's spaces and time limit (`rlrun.envpool_vec`);
    `backend` has checked that envpool can run it."""
    from rlrun import envpool_vec

    env = make_env(env_cfg)  # for its spaces and time limit
    try:
        spaces, limit = (env.observation_space, env.action_space), env.spec.max_episode_steps
    finally:
        env.close()
    name = env_id(env_cfg)
    return envpool_vec.EnvPoolVecEnv(
        envpool_vec.pool_maker(name, num_envs, limit), num_envs, *spaces, envpool_vec.TERMINAL[name]
    )


def make_fixed_task_vec_env(env_cfg: DictConfig, task_cfg: DictConfig, fixed: list[tasks.Task]) -> gym.vector.VectorEnv:
    """One env per task of `fixed` (from `tasks.eval_tasks`), each keeping its task every episode."""
    return gym.vector.SyncVectorEnv(
        [lambda task=task: tasks.wrap_fixed(make_env(env_cfg), task_cfg, task) for task in fixed]
    )


def check_env(
    env_cfg: DictConfig,
    check_spaces: Callable[[gym.Space, gym.Space], None] | None = None,
    task_cfg: DictConfig | None = None,
) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of the env `env_cfg` describes, once it has shown it can run.

    Checks each keyword argument against the constructor (a name it takes, a value of its default's
    type, one of its table's entries), builds one env, refuses observations rlrun cannot encode,
    wraps it in `task_cfg`'s task distribution when given (refused unless the env takes every task
    parameter value the distribution can give, and observes the task as `observe` asks), calls
    `check_spaces` (the algorithm's own demands) on the spaces the algorithm will see, resets it
    and takes one random action. Raises ConfigError naming the key at fault.
    """
    name = env_id(env_cfg)
    backend(env_cfg, task_cfg)
    kwargs = _user_kwargs(env_cfg)
    with _gym_errors(name):
        spec = gym.spec(name)
        if spec.entry_point is None:
            raise ConfigError("env.id", name, "an id registered with an entry point")
        creators = [_load(point) for point in (spec.entry_point, spec.vector_entry_point) if point is not None]
    for kwarg, (key, value) in kwargs.items():
        if kwarg not in _MAKE_OWN:
            _check_kwarg(name, creators, kwarg, key, value)
    suspects = {key: value for kwarg, (key, value) in kwargs.items() if _differs_from_default(creators[0], kwarg, value)}
    env = _run(lambda: make_env(env_cfg), name, suspects, "be built")
    try:
        _check_observation_space(name, env.observation_space)
        if task_cfg is not None:
            env = tasks.wrap(env, task_cfg, seed=0, slot=0)
        if check_spaces is not None:
            check_spaces(env.observation_space, env.action_space)
        _run(lambda: env.reset(seed=0), name, suspects, "reset")
        env.action_space.seed(0)
        _run(lambda: env.step(env.action_space.sample()), name, suspects, "take a step")
        return env.observation_space, env.action_space
    finally:
        env.close()


def _load(entry_point: str | Callable) -> Callable:
    return entry_point if callable(entry_point) else load_env_creator(entry_point)


def _parameters(creator: Callable) -> tuple[dict[str, inspect.Parameter], bool]:
    """The constructor's keyword parameters, and whether it also takes any other keyword (**kwargs)."""
    try:
        params = inspect.signature(creator).parameters.values()
    except (TypeError, ValueError):  # a builtin or C extension without a signature: nothing to check against
        return {}, True
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p for p in params if p.kind in keywords}, takes_any


def _check_kwarg(name: str, creators: list[Callable], kwarg: str, key: str, value: Any) -> None:
    """Refuse a keyword a constructor does not take, or a value unlike the constructor's default."""
    for creator in creators:
        params, takes_any = _parameters(creator)
        if kwarg not in params:
            if takes_any:
                continue
            taken = ", ".join(p for p in params if p not in _MAKE_OWN and p != "num_envs") or "none"
            raise ConfigError(key, value, f"a keyword argument that {name} takes ({taken})")
        default = params[kwarg].default
        rule = _same_kind(default)
        if value is not None and rule is not None and not rule.check(value):
            raise ConfigError(key, value, f"{rule.allowed}, as {name}'s {kwarg} (default {default!r})")
        options, allowed = _CHOICES.get(creator, {}).get(kwarg, ((), ""))
        if options and value not in options:
            raise ConfigError(key, value, allowed)


def _same_kind(default: Any) -> Rule | None:
    """What a value must be to stand in for a constructor's default; None when the default says nothing."""
    if isinstance(default, bool):
        return flag()
    if isinstance(default, (int, float)):
        return Rule(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
    if isinstance(default, str):
        return Rule(lambda v: isinstance(v, str), "a string")
    if isinstance(default, (list, tuple)):
        return Rule(lambda v: isinstance(v, (list, tuple)), "a list")
    if isinstance(default, dict):
        return Rule(lambda v: isinstance(v, dict), "a mapping")
    return None


def _differs_from_default(creator: Callable, kwarg: str, value: Any) -> bool:
    """Whether the user's value changes the constructor's behaviour (so it may be why the env fails)."""
    param = _parameters(creator)[0].get(kwarg)
    if param is None or param.default is inspect.Parameter.empty:
        return True
    try:
        return bool(value != param.default)
    except (ValueError, TypeError):  # an array default, whose comparison has no single truth value
        return True


def _run(step: Callable, name: str, suspects: dict[str, Any], doing: str) -> Any:
    """`step()`, with any exception it raises turned into a ConfigError naming the key that likely caused it."""
    try:
        return step()
    except ConfigError:
        raise
    except Exception as err:  # the env's own code, any error: what matters is which setting led to it
        reason = f"({type(err).__name__}: {_first_line(err)})"
        if len(suspects) == 1:
            ((key, value),) = suspects.items()
            raise ConfigError(key, value, f"a value with which {name} can {doing} {reason}") from err
        if suspects:
            settings = f"{name} with {', '.join(suspects)}"
            raise ConfigError("env", settings, f"settings with which it can {doing} {reason}") from err
        raise ConfigError("env.id", name, f"an env that can {doing} with its default settings {reason}") from err


def _check_observation_space(name: str, space: gym.Space) -> None:
    boxes = isinstance(space, gym.spaces.Dict) and all(isinstance(s, gym.spaces.Box) for s in space.spaces.values())
    if not (isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)) or boxes):
        raise ConfigError(
            "env.id",
            name,
            f"an env whose observations rlrun encodes: Box, Discrete, or Dict of Box ({name} has {describe_space(space)})",
        )


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def describe_space(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Discrete):
        return f"Discrete({space.n})"
    if isinstance(space, gym.spaces.Box):
        return f"Box{space.shape}"
    if isinstance(space, gym.spaces.Tuple):
        return f"Tuple({', '.join(describe_space(s) for s in space.spaces)})"
    if isinstance(space, gym.spaces.Dict):
        return f"Dict({', '.join(f'{k}: {describe_space(s)}' for k, s in space.spaces.items())})"
    return type(space).__name__


def require_action_space(env_cfg: DictConfig, space: gym.Space, kinds: tuple[type, ...], algo: str, hint: str = ""):
    """Refuse an algorithm/env pair whose action space the algorithm cannot handle."""
    if not isinstance(space, kinds):
        allowed = " or ".join(k.__name__ for k in kinds) + f" action spaces for algo={algo}"
        raise ConfigError("env", f"{env_cfg.name} ({describe_space(space)} actions)", allowed + hint)


def flat_obs_dim(space: gym.Space) -> int:
    """Size of an observation fed to an MLP (one-hot for Discrete observation spaces, a Dict's keys
    concatenated), as rlrun.nets.ObsEncoder gives it."""
    if isinstance(space, gym.spaces.Dict):
        return sum(flat_obs_dim(sub) for sub in space.spaces.values())
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape))
