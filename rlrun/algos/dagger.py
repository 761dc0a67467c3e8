"""DAgger (dataset aggregation): the learner drives, an expert labels the states it visits.

    1. run pi_theta for N env steps (in the first round the expert drives) and keep the states s_t
    2. ask the expert for its action in each: a_t = pi*(s_t)
    3. aggregate: D <- D u {(s_t, a_t)}
    4. S times: theta <- theta + lr grad 1/B sum_i log pi_theta(a_i|s_i)   on a minibatch of D

Behaviour cloning fits the expert's own states only; once the learner strays from them it meets
states nothing labelled, and its mistakes compound. DAgger labels the states the learner reaches.
The first round's states are the expert's rollouts (Ross et al.'s mixture with beta_1 = 1, then 0):
the learner starts as BC on N expert labels instead of acting at random. Every state visited is
labelled, so `charts/expert_labels` (the size of D) equals the env steps of the x-axis.

The expert is any finished run's deterministic policy (`algo.expert`: its directory), which the
runner hands over through `Context.load_policy`; built without one (to evaluate a DAgger run) the
learner acts but cannot train.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rlrun import envs
from rlrun.algos.base import Context
from rlrun.algos.imitation import Imitation
from rlrun.config import ConfigError
from rlrun.data import RolloutCollector, episode_metrics


class DAgger(Imitation):
    def __init__(self, cfg, ctx: Context):
        if cfg.expert is None:
            raise ConfigError("algo.expert", None, "a finished run's directory, whose policy labels the states")
        super().__init__(cfg, ctx)
        self.collector = RolloutCollector(ctx.make_vec_env(cfg.num_envs), seed=ctx.seed)
        self.expert = None if ctx.load_policy is None else self.load_expert(ctx)
        self.rounds = 0
        self.states: torch.Tensor | None = None  # D's states
        self.expert_actions: torch.Tensor | None = None  # and their labels

    def load_expert(self, ctx: Context):
        """The expert run's policy, refused unless it takes this env's observations and gives its actions."""
        cfg, action_space = self.cfg, ctx.spaces[1]
        expert = ctx.load_policy(cfg.expert, cfg.expert_model)
        try:
            actions = np.asarray(expert(self.collector.obs))
        except (RuntimeError, ValueError, IndexError) as err:
            raise ConfigError("algo.expert", cfg.expert, f"a run on an env with this env's observations ({err})") from None
        fits = actions.shape == (cfg.num_envs, *action_space.shape)
        if isinstance(action_space, gym.spaces.Discrete):
            fits = fits and np.issubdtype(actions.dtype, np.integer) and ((0 <= actions) & (actions < action_space.n)).all()
        if not fits:
            raise ConfigError(
                "algo.expert", cfg.expert, f"a run whose actions are this env's {envs.describe_space(action_space)}"
            )
        return expert

    def iterate(self, step: int) -> tuple[int, dict[str, float]]:
        cfg = self.cfg
        if self.expert is None:
            raise RuntimeError("DAgger was built without Context.load_policy: it has no expert to ask")
        # 1. run the learner (the expert in the first round) for N env steps
        drive = self.expert if self.rounds == 0 else self.act

        def sample(obs):
            actions = drive(obs)
            return actions, actions

        rollout = self.collector.collect(sample, T=cfg.N // cfg.num_envs)
        states = rollout.obs[:-1][rollout.valid]
        # 2. the expert labels every state visited
        labels = self.labels(np.asarray(self.expert(states)))
        # 3. aggregate
        states = self.tensor(states)
        first = self.states is None
        self.states = states if first else torch.cat([self.states, states])
        self.expert_actions = labels if first else torch.cat([self.expert_actions, labels])
        self.rounds += 1
        # 4. refit pi_theta on all of D
        metrics = self.fit(self.states, self.expert_actions, cfg.S)
        metrics["charts/expert_labels"] = float(len(self.states))
        return rollout.steps, {**metrics, **episode_metrics(rollout)}

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "rounds": self.rounds,
            "states": self.states,
            "expert_actions": self.expert_actions,
            "collector": self.collector.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.rounds = state["rounds"]
        self.states, self.expert_actions = (
            None if state[key] is None else state[key].to(self.device) for key in ("states", "expert_actions")
        )
        self.collector.load_state_dict(state["collector"])
