"""Every algorithm's config rules and checks, in one table, importable without torch.

`validate(cfg)` runs every check that needs no environment; `check_spaces` the ones that need the
env's observation and action spaces. Both run before torch is imported, so a bad value is refused
in well under the time `import torch` takes. The classes themselves are imported only by
`rlrun.build`, from `AlgoSpec.target`.

A test checks that each algorithm's yaml and its rules list the same keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from omegaconf import DictConfig

from rlrun import config, envs
from rlrun.config import ConfigError, Rule, choice, flag, integer, layers, number, optional, text

SHARED_NET_RULES = {
    "hidden_sizes": layers(),
    "activation": choice("tanh", "relu"),
}

# The keys actor_critic and ppo share (rlrun.algos.on_policy reads them).
ON_POLICY_RULES = {
    "num_envs": integer(1),
    "T": integer(1),
    "gamma": number(0, 1),
    "gae_lambda": number(0, 1),
    "normalize_advantages": flag(),
    "value_coef": number(0),
    "entropy_coef": number(0),
    "optimizer": choice("adam", "rmsprop"),
    "lr": number(0, low_open=True),
    "lr_anneal_steps": optional(integer(1)),
    "max_grad_norm": optional(number(0, low_open=True)),
    "shared": flag(),
    **SHARED_NET_RULES,
    "log_std_init": number(-20, 2),
}

# algo.her: hindsight relabelling of goal envs' transitions (rlrun.buffers.HindsightReplayBuffer).
HER_RULES = {"strategy": optional(choice("future", "final", "episode")), "k": integer(1)}

MAX_CEM_SAMPLES = 10_000  # actions CEM scores per state and round (QT-Opt itself uses 64)

# The keys fqi and qtopt share: the fitted Q-iteration box and its replay buffer.
FITTED_Q_RULES = {
    "N": integer(1, config.MAX_TRANSITIONS),
    "K": integer(1),
    "S": integer(1),
    "gamma": number(0, 1),
    "n_step": integer(1, 1000),
    "learning_starts": integer(0),
    "num_envs": integer(1),
    "buffer_size": integer(1, config.MAX_TRANSITIONS),
    "batch_size": integer(1, config.MAX_TRANSITIONS),
    "lr": number(0, low_open=True),
    "target_update": choice("iteration", "polyak"),
    "tau": number(0, 1, low_open=True),
    "lr_anneal_steps": optional(integer(1)),
    "her": Rule(lambda v: isinstance(v, DictConfig) and set(v) == set(HER_RULES), "a mapping {strategy: ..., k: ...}"),
    **SHARED_NET_RULES,
}

DP_RULES = {
    "gamma": number(0, 1),
    "theta": number(0, low_open=True),
    "max_iterations": integer(1),
}


def _check_ppo(cfg: DictConfig) -> None:
    rollout = cfg.num_envs * cfg.T
    if cfg.minibatch_size > rollout:
        raise ConfigError(
            "algo.minibatch_size",
            cfg.minibatch_size,
            f"an integer in [1, {rollout}] (a rollout holds num_envs * T = {rollout} steps)",
        )


def _check_n_fills_envs(cfg: DictConfig) -> None:
    if cfg.N % cfg.num_envs:
        raise ConfigError("algo.N", cfg.N, f"a multiple of algo.num_envs ({cfg.num_envs})")


def _check_her(cfg: DictConfig) -> None:
    for key, rule in HER_RULES.items():
        rule(f"algo.her.{key}", cfg.her[key])


def _check_fqi(cfg: DictConfig) -> None:
    _check_her(cfg)
    if cfg.dataset is not None:  # offline: N, num_envs and the collection keys are not used
        if cfg.her.strategy is not None:
            raise ConfigError("algo.her.strategy", cfg.her.strategy, "null with algo.dataset (a dataset is not relabelled)")
        if cfg.n_step > 1:
            raise ConfigError(
                "algo.n_step",
                cfg.n_step,
                "1 with algo.dataset (a dataset's rows are one step each; "
                "pair settings in configs/algo_env/ set more for online runs)",
            )
        return
    if cfg.N < cfg.batch_size:
        raise ConfigError("algo.N", cfg.N, f">= algo.batch_size ({cfg.batch_size}): each iteration's data fills a batch")
    _check_n_fills_envs(cfg)


def _check_actor_critic(cfg: DictConfig) -> None:
    if cfg.critic_lr is not None and cfg.shared:
        raise ConfigError("algo.critic_lr", cfg.critic_lr, "null with algo.shared=true (the shared body has one step size)")


def _check_qtopt(cfg: DictConfig) -> None:
    _check_her(cfg)
    if cfg.cem_elites > cfg.cem_samples:
        raise ConfigError("algo.cem_elites", cfg.cem_elites, f"<= algo.cem_samples ({cfg.cem_samples})")
    _check_n_fills_envs(cfg)


# The keys bc and dagger share: maximum likelihood on labelled states (rlrun.algos.imitation).
IMITATION_RULES = {
    "S": integer(1),
    "batch_size": integer(1, config.MAX_TRANSITIONS),
    "lr": number(0, low_open=True),
    **SHARED_NET_RULES,
    "log_std_init": number(-20, 2),
}


@dataclass(frozen=True)
class AlgoSpec:
    """What `algo.name` selects: the class, the rules of its yaml keys and what it can train on."""

    target: str  # "module:Class", imported only when the run is built
    rules: Mapping[str, Rule]
    actions: tuple[type[gym.Space], ...] = ()  # action spaces it takes (empty: the algorithm checks its env)
    hint: str = ""  # said after a refused action space
    check: Callable[[DictConfig], None] | None = None  # checks across keys of its config


SPECS: dict[str, AlgoSpec] = {
    "reinforce": AlgoSpec(
        "rlrun.algos.reinforce:Reinforce",
        {
            "N": integer(1, config.MAX_SIDE_BY_SIDE),
            "gamma": number(0, 1),
            "reward_to_go": flag(),
            "baseline": choice("none", "mean", "value"),
            "normalize_advantages": flag(),
            "lr": number(0, low_open=True),
            "value_lr": number(0, low_open=True),
            "lr_anneal_steps": optional(integer(1)),
            "value_steps": integer(1),
            **SHARED_NET_RULES,
            "log_std_init": number(-20, 2),
        },
        (gym.spaces.Discrete, gym.spaces.Box),
    ),
    "actor_critic": AlgoSpec(
        "rlrun.algos.actor_critic:ActorCritic",
        {"online": flag(), "advantage": choice("nstep", "gae"), **ON_POLICY_RULES,
         "critic_lr": optional(number(0, low_open=True))},
        (gym.spaces.Discrete, gym.spaces.Box),
        check=_check_actor_critic,
    ),
    "ppo": AlgoSpec(
        "rlrun.algos.ppo:PPO",
        {
            **ON_POLICY_RULES,
            "epochs": integer(1),
            "minibatch_size": integer(1),
            "clip_range": number(0, low_open=True),
            "value_clip": optional(number(0, low_open=True)),
        },
        (gym.spaces.Discrete, gym.spaces.Box),
        check=_check_ppo,
    ),
    "fqi": AlgoSpec(
        "rlrun.algos.fqi:FittedQIteration",
        {
            **FITTED_Q_RULES,
            "collect": choice("egreedy", "random"),
            "epsilon_start": number(0, 1),
            "epsilon_end": number(0, 1),
            "epsilon_decay_steps": integer(0),
            "loss": choice("mse", "huber"),
            "double_q": flag(),
            "dueling": flag(),
            "max_grad_norm": optional(number(0, low_open=True)),
            "dataset": optional(text()),
        },
        (gym.spaces.Discrete,),
        " (for Box actions use algo=qtopt)",
        _check_fqi,
    ),
    "qtopt": AlgoSpec(
        "rlrun.algos.qtopt:QTOpt",
        {
            **FITTED_Q_RULES,
            "exploration_noise": number(0),
            "cem_iterations": integer(1),
            "cem_samples": integer(1, MAX_CEM_SAMPLES),
            "cem_elites": integer(1),
            "cem_init_std": number(0, low_open=True),
        },
        (gym.spaces.Box,),
        " (for Discrete actions use algo=fqi)",
        _check_qtopt,
    ),
    "value_iteration": AlgoSpec("rlrun.algos.dynamic_programming:ValueIteration", DP_RULES),
    "policy_iteration": AlgoSpec(
        "rlrun.algos.dynamic_programming:PolicyIteration",
        {**DP_RULES, "evaluation": choice("exact", "iterative")},
    ),
    "bc": AlgoSpec(
        "rlrun.algos.bc:BehaviourCloning",
        {"dataset": optional(text()), "filter_top": number(0, 1, low_open=True), **IMITATION_RULES},
        (gym.spaces.Discrete, gym.spaces.Box),
    ),
    "dagger": AlgoSpec(
        "rlrun.algos.dagger:DAgger",
        {
            "expert": optional(text()),
            "expert_model": choice("final", "best"),
            "N": integer(1, config.MAX_TRANSITIONS),
            "num_envs": integer(1),
            **IMITATION_RULES,
        },
        (gym.spaces.Discrete, gym.spaces.Box),
        check=_check_n_fills_envs,
    ),
}


def get(name: Any) -> AlgoSpec:
    if name not in SPECS:
        raise ConfigError("algo.name", name, "one of " + ", ".join(sorted(SPECS)))
    return SPECS[name]


def validate(cfg: DictConfig) -> AlgoSpec:
    """The top-level keys, the algorithm's keys and its checks across keys: all that needs no env."""
    config.check(cfg, config.RULES)
    if cfg.seed + cfg.seeds - 1 > config.MAX_SEED:  # the last run's seed must be one numpy takes
        raise ConfigError(
            "seeds", cfg.seeds, f"an integer in [1, {config.MAX_SEED - cfg.seed + 1}] with seed={cfg.seed}"
        )
    spec = get(cfg.algo.get("name"))
    config.check(cfg, spec.rules, prefix="algo.")
    if spec.check is not None:
        spec.check(cfg.algo)
    return spec


def check_spaces(cfg: DictConfig, obs_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse an algorithm/env pair whose spaces the algorithm cannot take."""
    spec = get(cfg.algo.name)
    if spec.actions:
        envs.require_action_space(cfg.env, action_space, spec.actions, cfg.algo.name, spec.hint)
