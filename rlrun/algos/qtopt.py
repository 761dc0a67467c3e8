"""QT-Opt-style Q-learning for Box actions: fitted Q-iteration with the max over continuous
actions taken by the cross-entropy method (rlrun.cem), both to act and for the targets:

    1. collect N transitions with a = CEM argmax_a Q(s, a) plus Gaussian noise, into a replay buffer
    2. K times:  y_i <- r_i + gamma max_a' min_j Q'_j(s'_i, a')     (max by CEM; no value after a terminal)
    3.           S times: phi_j <- phi_j - lr grad 1/2 sum_i ||Q_j(s_i, a_i) - y_i||^2, j = 1, 2

Clipped double Q: two Q networks, each with a target copy; the targets use the smaller of the
two target values, which keeps the max over a noisy Q from inflating the targets.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import torch

from rlrun import cem, envs
from rlrun.algos import Context, plain
from rlrun.algos.fqi import polyak
from rlrun.buffers import ReplayBuffer, Transitions, from_rollout
from rlrun.config import ConfigError, choice, integer, layers, number
from rlrun.data import RolloutCollector
from rlrun.nets import StateActionQ, adam

RULES = {
    "N": integer(1),
    "K": integer(1),
    "S": integer(1),
    "gamma": number(0, 1),
    "learning_starts": integer(0),
    "num_envs": integer(1),
    "buffer_size": integer(1),
    "batch_size": integer(1),
    "lr": number(0, low_open=True),
    "target_update": choice("iteration", "polyak"),
    "tau": number(0, 1, low_open=True),
    "exploration_noise": number(0),
    "cem_iterations": integer(1),
    "cem_samples": integer(1),
    "cem_elites": integer(1),
    "cem_init_std": number(0, low_open=True),
    "hidden_sizes": layers(),
    "activation": choice("tanh", "relu"),
}


class QTOpt:
    RULES = RULES

    def __init__(self, cfg, ctx: Context):
        obs_space, action_space = ctx.spaces
        hint = " (for Discrete actions use algo=fqi)"
        envs.require_action_space(ctx.env_cfg, action_space, (gym.spaces.Box,), "qtopt", hint)
        if cfg.cem_elites > cfg.cem_samples:
            raise ConfigError("algo.cem_elites", cfg.cem_elites, f"<= algo.cem_samples ({cfg.cem_samples})")
        if cfg.N % cfg.num_envs:
            raise ConfigError("algo.N", cfg.N, f"a multiple of algo.num_envs ({cfg.num_envs})")
        self.cfg = plain(cfg)
        self.device = ctx.device
        self.rng = ctx.rng()
        self.low = torch.as_tensor(action_space.low, dtype=torch.float32, device=self.device)
        self.high = torch.as_tensor(action_space.high, dtype=torch.float32, device=self.device)
        self.q = StateActionQ(obs_space, action_space, cfg.hidden_sizes, cfg.activation, n=2).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = adam(self.q.parameters(), cfg.lr)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_space, action_space)
        self.collector = RolloutCollector(ctx.make_vec_env(cfg.num_envs), seed=ctx.seed)
        # separate streams, so how often the runner evaluates never changes what training draws
        self.train_generator = torch.Generator(self.device).manual_seed(ctx.seed)
        self.eval_generator = torch.Generator(self.device).manual_seed(ctx.seed + 1)
        self.env_steps = 0

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    def greedy(self, q: StateActionQ, obs: torch.Tensor, generator: torch.Generator) -> cem.CEMResult:
        """CEM's argmax_a min_j Q_j(s, a) for each state of the batch."""
        cfg = self.cfg

        def value(actions: torch.Tensor) -> torch.Tensor:
            states = obs.unsqueeze(1).expand(-1, actions.shape[1], *obs.shape[1:])
            return q(states, actions).min(0).values

        return cem.maximize(
            value, len(obs), self.low, self.high,
            cfg.cem_iterations, cfg.cem_samples, cfg.cem_elites, cfg.cem_init_std, generator,
        )

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.greedy(self.q, self.tensor(obs), self.eval_generator).actions.cpu().numpy()

    @torch.inference_mode()
    def collection_actions(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uniform actions before learning starts; then the CEM action plus Gaussian noise."""
        low, high = self.low.cpu().numpy(), self.high.cpu().numpy()
        if self.env_steps < self.cfg.learning_starts:
            actions = self.rng.uniform(low, high, size=(len(obs), *low.shape))
        else:
            actions = self.greedy(self.q, self.tensor(obs), self.train_generator).actions.cpu().numpy()
            actions += self.rng.normal(size=actions.shape) * self.cfg.exploration_noise * (high - low) / 2
        actions = np.clip(actions, low, high).astype(np.float32)
        return actions, actions

    def iterate(self) -> tuple[int, dict[str, float]]:
        cfg = self.cfg
        # 1. collect N transitions with the noisy CEM policy
        rollout = self.collector.collect(self.collection_actions, T=cfg.N // cfg.num_envs)
        self.buffer.add(from_rollout(rollout))
        self.env_steps += rollout.steps
        metrics = {}
        if len(rollout.episode_returns):
            metrics["charts/episodic_return"] = float(rollout.episode_returns.mean())
            metrics["charts/episodic_length"] = float(rollout.episode_lengths.mean())
        if len(self.buffer) < cfg.learning_starts:
            return rollout.steps, metrics

        losses, q_values, elite_stds = [], [], []
        for _ in range(cfg.K):
            if cfg.target_update == "iteration":
                self.q_target.load_state_dict(self.q.state_dict())
            for _ in range(cfg.S):
                batch = self.buffer.sample(cfg.batch_size, self.rng).to(self.device)
                # 2. targets: y = r + gamma max_a' min_j Q'_j(s', a'), the max by CEM
                with torch.no_grad():
                    best = self.greedy(self.q_target, batch.next_obs, self.train_generator)
                    y = batch.rewards + cfg.gamma * best.values * ~batch.terminated
                # 3. a gradient step on both Qs' squared errors
                loss, q_taken = self.gradient_step(batch, y)
                losses.append(loss)
                q_values.append(q_taken)
                elite_stds.append(best.elite_std.mean())
                if cfg.target_update == "polyak":
                    polyak(self.q_target, self.q, cfg.tau)
        metrics["losses/q_loss"] = torch.stack(losses).mean().item()
        metrics["losses/q_values"] = torch.stack(q_values).mean().item()
        metrics["losses/cem_elite_std"] = torch.stack(elite_stds).mean().item()
        return rollout.steps, metrics

    def gradient_step(self, batch: Transitions, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.q(batch.obs, batch.actions)  # [2, B]
        loss = 0.5 * ((q - y) ** 2).mean(1).sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach(), q.detach().mean()

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"q": self.q}

    def state_dict(self) -> dict:
        return {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "collector": self.collector.state_dict(),
            "env_steps": self.env_steps,
            "rng": self.rng.bit_generator.state,
            "train_generator": self.train_generator.get_state(),
            "eval_generator": self.eval_generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.collector.load_state_dict(state["collector"])
        self.env_steps = state["env_steps"]
        self.rng.bit_generator.state = state["rng"]
        self.train_generator.set_state(state["train_generator"])
        self.eval_generator.set_state(state["eval_generator"])
