"""Fitted Q-iteration, as the lecture's box, for Discrete actions:

    1. collect N transitions {(s_i, a_i, s'_i, r_i)} with the collection policy, into a replay buffer
    2. K times:  y_i <- r_i + gamma max_a' Q_phi'(s'_i, a')     (no value after a true terminal)
    3.           S times: phi <- phi - lr grad 1/2 sum_i ||Q_phi(s_i, a_i) - y_i||^2   (on a minibatch)

phi' is the target network: a copy of phi refreshed at the start of every iteration, so the
targets of one iteration are those of a fixed Q (computing them per minibatch gives the same
numbers as computing them for the whole buffer first), or a Polyak average updated every step.

Offline (`dataset` set): step 1 is skipped; the buffer is the dataset. With no env steps, the
runner's budget and x-axis count gradient steps.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import torch

from rlrun import datasets, envs
from rlrun.algos import Context, plain
from rlrun.buffers import ReplayBuffer, Transitions, from_rollout
from rlrun.config import ConfigError, choice, flag, integer, layers, number, optional, text
from rlrun.data import RolloutCollector
from rlrun.nets import QNetwork, adam

RULES = {
    "N": integer(1),
    "K": integer(1),
    "S": integer(1),
    "gamma": number(0, 1),
    "collect": choice("egreedy", "random"),
    "epsilon_start": number(0, 1),
    "epsilon_end": number(0, 1),
    "epsilon_decay_steps": integer(0),
    "learning_starts": integer(0),
    "num_envs": integer(1),
    "buffer_size": integer(1),
    "batch_size": integer(1),
    "lr": number(0, low_open=True),
    "loss": choice("mse", "huber"),
    "target_update": choice("iteration", "polyak"),
    "tau": number(0, 1, low_open=True),
    "double_q": flag(),
    "max_grad_norm": optional(number(0, low_open=True)),
    "hidden_sizes": layers(),
    "activation": choice("tanh", "relu"),
    "dataset": optional(text()),
}


def q_targets(batch: Transitions, gamma: float, next_q_target: torch.Tensor, next_q_online: torch.Tensor | None):
    """y = r + gamma max_a' Q'(s', a'), and y = r after a terminal state.

    `next_q_target` [B, n_actions] is Q_phi'(s', .). With double Q, `next_q_online` (Q_phi(s', .))
    picks a' and Q_phi' values it, which curbs the max's overestimation.
    """
    if next_q_online is None:
        next_value = next_q_target.max(-1).values
    else:
        next_value = next_q_target.gather(-1, next_q_online.argmax(-1, keepdim=True)).squeeze(-1)
    return batch.rewards + gamma * next_value * ~batch.terminated


def epsilon_at(step: int, start: float, end: float, decay_steps: int) -> float:
    """Linear from `start` to `end` over the first `decay_steps` env steps, then `end`."""
    if step >= decay_steps:
        return end
    return start + (end - start) * step / decay_steps


def polyak(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """phi' <- tau phi + (1 - tau) phi'."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


class FittedQIteration:
    RULES = RULES

    def __init__(self, cfg, ctx: Context):
        obs_space, action_space = ctx.spaces
        hint = " (for Box actions use algo=qtopt)"
        envs.require_action_space(ctx.env_cfg, action_space, (gym.spaces.Discrete,), "fqi", hint)
        self.cfg = plain(cfg)
        self.device = ctx.device
        self.rng = ctx.rng()
        self.n_actions = int(action_space.n)
        self.q = QNetwork(obs_space, self.n_actions, cfg.hidden_sizes, cfg.activation).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = adam(self.q.parameters(), cfg.lr)
        self.env_steps = 0
        if cfg.dataset is not None:
            data = datasets.load(cfg.dataset, obs_space, action_space)
            if len(data["rewards"]) < cfg.batch_size:
                raise ConfigError("algo.batch_size", cfg.batch_size, f"<= the dataset's {len(data['rewards'])} transitions")
            self.buffer = ReplayBuffer(len(data["rewards"]), obs_space, action_space)
            self.buffer.add(datasets.to_transitions(data))
            self.collector = None
            return
        if cfg.N < cfg.batch_size:
            raise ConfigError("algo.N", cfg.N, f">= algo.batch_size ({cfg.batch_size}): each iteration's data fills a batch")
        if cfg.N % cfg.num_envs:
            raise ConfigError("algo.N", cfg.N, f"a multiple of algo.num_envs ({cfg.num_envs})")
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_space, action_space)
        self.collector = RolloutCollector(ctx.make_vec_env(cfg.num_envs), seed=ctx.seed)

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.q(self.tensor(obs)).argmax(-1).cpu().numpy()

    @property
    def epsilon(self) -> float:
        cfg = self.cfg
        if cfg.collect == "random" or self.env_steps < cfg.learning_starts:
            return 1.0
        return epsilon_at(self.env_steps - cfg.learning_starts, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_decay_steps)

    def collection_actions(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Epsilon-greedy on the current Q (epsilon = 1 is the random policy)."""
        random = self.rng.integers(self.n_actions, size=len(obs))
        if self.epsilon < 1:
            explore = self.rng.random(len(obs)) < self.epsilon
            random = np.where(explore, random, self.act(obs))
        return random, random

    def iterate(self) -> tuple[int, dict[str, float]]:
        cfg = self.cfg
        metrics = {}
        # 1. collect N transitions with the collection policy
        if self.collector is not None:
            metrics["charts/epsilon"] = self.epsilon
            rollout = self.collector.collect(self.collection_actions, T=cfg.N // cfg.num_envs)
            self.buffer.add(from_rollout(rollout))
            self.env_steps += rollout.steps
            if len(rollout.episode_returns):
                metrics["charts/episodic_return"] = float(rollout.episode_returns.mean())
                metrics["charts/episodic_length"] = float(rollout.episode_lengths.mean())
            if len(self.buffer) < cfg.learning_starts:
                return rollout.steps, metrics

        losses, q_values = [], []
        for _ in range(cfg.K):
            # 2. targets from the frozen phi' of this iteration
            if cfg.target_update == "iteration":
                self.q_target.load_state_dict(self.q.state_dict())
            for _ in range(cfg.S):
                # 3. a gradient step on the squared (or Huber) error
                loss, q_taken = self.gradient_step(self.buffer.sample(cfg.batch_size, self.rng).to(self.device))
                losses.append(loss)
                q_values.append(q_taken)
                if cfg.target_update == "polyak":
                    polyak(self.q_target, self.q, cfg.tau)
        metrics["losses/q_loss"] = torch.stack(losses).mean().item()
        metrics["losses/q_values"] = torch.stack(q_values).mean().item()
        steps = rollout.steps if self.collector is not None else cfg.K * cfg.S
        return steps, metrics

    def gradient_step(self, batch: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            next_q_online = self.q(batch.next_obs) if self.cfg.double_q else None
            y = q_targets(batch, self.cfg.gamma, self.q_target(batch.next_obs), next_q_online)
        q_taken = self.q(batch.obs).gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        if self.cfg.loss == "huber":
            loss = torch.nn.functional.smooth_l1_loss(q_taken, y)
        else:
            loss = 0.5 * ((q_taken - y) ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        if self.cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.q.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        return loss.detach(), q_taken.detach().mean()

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"q": self.q}

    def state_dict(self) -> dict:
        state = {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env_steps": self.env_steps,
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
        self.env_steps = state["env_steps"]
        self.rng.bit_generator.state = state["rng"]
