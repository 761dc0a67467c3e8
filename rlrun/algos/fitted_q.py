"""The fitted Q-iteration box that fqi and qtopt share; each supplies its own targets and policy.

    1. collect N transitions {(s_i, a_i, s'_i, r_i)} with the collection policy, into a replay buffer
       (with n_step > 1, rows of n steps: r_i the discounted sum of n rewards, s'_i the state n steps on)
    2. K times:  refresh the targets' network phi' (target_update=iteration)
    3.           S times: a gradient step on a minibatch (the algorithm's `gradient_step`, which
                 steps phi on ||Q_phi(s_i, a_i) - y_i||^2)

Each iteration draws its S minibatches first. Where the targets depend on phi' alone, the algorithm
computes y_i for all of them in one pass as step 2 says (qtopt: one CEM search instead of S); where
they also depend on the current phi (fqi's double Q), each gradient step computes its own.

Offline (`dataset` given to the constructor), step 1 is skipped; the buffer is the dataset and the
run's x-axis counts gradient steps.

Goal-conditioned (`her.strategy` set, a goal env): the buffer relabels part of every minibatch with
goals achieved later in the same episode (hindsight experience replay, rlrun.buffers), so the
Q-function learns to reach the goals it did reach.
"""

from __future__ import annotations

import abc
import copy

import numpy as np
import torch

from rlrun import envs
from rlrun.algos.base import Algorithm, Context, lr_left, plain
from rlrun.buffers import HindsightReplayBuffer, NStepReplayBuffer, ReplayBuffer, Transitions, has_goals
from rlrun.config import ConfigError
from rlrun.data import Observations, RolloutCollector, episode_metrics
from rlrun.nets import as_tensors


def polyak(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """phi' <- tau phi + (1 - tau) phi'."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


class FittedQ(Algorithm):
    """The box above around `self.q` and its target copy `self.q_target`."""

    def __init__(self, cfg, ctx: Context, q: torch.nn.Module, optimizer_of, dataset: Transitions | None = None):
        obs_space, action_space = ctx.spaces
        self.cfg = plain(cfg)
        self.device = ctx.device
        self.rng = ctx.rng()
        self.q = q.to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = optimizer_of(self.q.parameters())
        if dataset is not None:
            self.x_axis = "gradient_steps"
            self.buffer = ReplayBuffer(len(dataset), obs_space, action_space)
            self.buffer.add(dataset)
            self.collector = None
        else:
            self.buffer = self.replay_buffer(ctx)
            self.collector = RolloutCollector(ctx.make_vec_env(cfg.num_envs), seed=ctx.seed)

    def replay_buffer(self, ctx: Context) -> ReplayBuffer | HindsightReplayBuffer:
        """The online buffer: with hindsight relabelling when `her.strategy` is set (a goal env's)."""
        cfg, (obs_space, action_space) = self.cfg, ctx.spaces
        strategy = cfg.her["strategy"]
        if strategy is None and cfg.n_step > 1:
            return NStepReplayBuffer(cfg.buffer_size, obs_space, action_space, cfg.n_step, cfg.gamma)
        if strategy is None:
            return ReplayBuffer(cfg.buffer_size, obs_space, action_space)
        env = ctx.make_env().unwrapped
        if not (has_goals(obs_space) and hasattr(env, "compute_reward") and hasattr(env, "compute_terminated")):
            raise ConfigError(
                "algo.her.strategy",
                strategy,
                f"null for {ctx.env_cfg.name} ({envs.describe_space(obs_space)} observations): relabelling needs "
                "a goal env (Dict observations with achieved_goal and desired_goal, compute_reward, compute_terminated)",
            )
        if cfg.n_step > 1:  # checked after the env: on CartPole the pair's n_step is not what the user got wrong
            raise ConfigError("algo.n_step", cfg.n_step, "1 with algo.her.strategy set (relabelled rows are one step each)")
        return HindsightReplayBuffer(
            cfg.buffer_size, obs_space, action_space, cfg.num_envs, strategy, cfg.her["k"],
            env.compute_reward, env.compute_terminated,
        )

    def tensor(self, x: Observations) -> torch.Tensor | dict[str, torch.Tensor]:
        return as_tensors(x, self.device)

    @abc.abstractmethod
    def collection_actions(self, obs: Observations, step: int) -> np.ndarray:
        """The actions of the collection policy for a batch of observations, `step` env steps into the run."""

    def targets(self, batch: Transitions) -> torch.Tensor | None:
        """Step 2 for all S minibatches of an iteration at once (`batch` holds them one after another),
        from phi' as the iteration starts; None (this default): each `gradient_step` computes its own."""
        return None

    @abc.abstractmethod
    def gradient_step(self, batch: Transitions, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """One step on phi toward the targets `y` of this minibatch (from phi' here when `y` is None);
        returns scalar tensors by tag."""

    def collection_metrics(self, step: int) -> dict[str, float]:
        """What to log about the collection policy (e.g. its epsilon)."""
        return {}

    def iterate(self, step: int) -> tuple[int, dict[str, float]]:
        cfg = self.cfg
        metrics: dict[str, float] = {}
        steps = cfg.K * cfg.S
        # 1. collect N transitions with the collection policy
        if self.collector is not None:
            metrics.update(self.collection_metrics(step))

            def actions(obs):
                chosen = self.collection_actions(obs, step)
                return chosen, chosen

            rollout = self.collector.collect(actions, T=cfg.N // cfg.num_envs)
            self.buffer.add_rollout(rollout)
            steps = rollout.steps
            metrics.update(episode_metrics(rollout))
            if len(self.buffer) < cfg.learning_starts:
                return steps, metrics

        if cfg.lr_anneal_steps is not None:  # a Q-function that stops moving at the end of the budget
            lr = cfg.lr * lr_left(step, cfg.lr_anneal_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            metrics["charts/learning_rate"] = lr
        fitted: list[dict[str, torch.Tensor]] = []
        for _ in range(cfg.K):
            # 2. targets from the frozen phi' of this iteration, for the S minibatches it draws
            if cfg.target_update == "iteration":
                self.q_target.load_state_dict(self.q.state_dict())
            batch = Transitions.cat([self.buffer.sample(cfg.batch_size, self.rng) for _ in range(cfg.S)])
            batch = batch.to(self.device)
            minibatches, y = batch.split(cfg.batch_size), self.targets(batch)
            targets = [None] * cfg.S if y is None else y.split(cfg.batch_size)
            for minibatch, minibatch_y in zip(minibatches, targets, strict=True):
                # 3. a gradient step on a minibatch
                fitted.append(self.gradient_step(minibatch, minibatch_y))
                if cfg.target_update == "polyak":
                    polyak(self.q_target, self.q, cfg.tau)
        for tag in fitted[0]:
            metrics[tag] = torch.stack([f[tag] for f in fitted]).mean().item()
        return steps, metrics

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"q": self.q}

    def state_dict(self) -> dict:
        state = {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
        }
        if self.collector is not None:  # offline, the dataset file already holds the buffer
            state["buffer"] = self.buffer.state_dict()
            state["collector"] = self.collector.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.collector is not None:
            self.buffer.load_state_dict(state["buffer"])
            self.collector.load_state_dict(state["collector"])
        self.rng.bit_generator.state = state["rng"]
