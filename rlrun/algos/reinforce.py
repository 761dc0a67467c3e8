"""REINFORCE, as the lecture's box:

    1. sample {tau^i}, i = 1..N, from pi_theta(a_t|s_t)               (N envs side by side)
    2. grad J(theta) ~ 1/N sum_i sum_t grad log pi_theta(a_t^i|s_t^i) A_t^i
       with A_t = reward-to-go (or the whole return) minus a baseline
    3. theta <- theta + alpha grad J(theta)                           (one Adam step)
"""

from __future__ import annotations

import numpy as np
import torch

from rlrun.algos.base import Algorithm, Context, lr_left, plain
from rlrun.data import Trajectories, discounted_returns, sample_trajectories
from rlrun.nets import ActionAdapter, Adam, Policy, ValueFunction


def policy_gradient_loss(log_probs: torch.Tensor, advantages: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """-J surrogate whose gradient is the lecture's estimate: -1/N sum_i sum_t log pi(a|s) A.

    Inputs are [T, N]; padding (valid = false) contributes nothing.
    """
    n_trajectories = log_probs.shape[1]
    return -(log_probs * advantages * valid).sum() / n_trajectories


def weights(batch: Trajectories, gamma: float, reward_to_go: bool, bootstrap: np.ndarray) -> np.ndarray:
    """Per-step weights before any baseline: reward-to-go, or each trajectory's whole return.

    `bootstrap` [N] is V(s_T) for trajectories cut by a time limit (0 where there is no V).
    """
    next_values = np.zeros_like(batch.rewards)
    next_values[batch.truncated] = bootstrap[np.nonzero(batch.truncated)[1]]
    returns = discounted_returns(batch.rewards, batch.terminated, batch.truncated, next_values, gamma)
    return returns if reward_to_go else np.broadcast_to(returns[0], returns.shape).copy()


class Reinforce(Algorithm):
    def __init__(self, cfg, ctx: Context):
        obs_space, action_space = ctx.spaces
        self.cfg, self.device = plain(cfg), ctx.device
        self.env = ctx.make_vec_env(cfg.N)
        self.rng = ctx.rng()
        self.to_env = ActionAdapter(action_space)
        self.policy = Policy(obs_space, action_space, cfg.hidden_sizes, cfg.activation, cfg.log_std_init).to(self.device)
        self.optimizer = Adam(self.policy.parameters(), lr=cfg.lr)
        self.acting = self.policy.acting(self.rng)  # numpy on the CPU, torch where numpy does not apply
        self.value = None
        if cfg.baseline == "value":
            self.value = ValueFunction(obs_space, cfg.hidden_sizes, cfg.activation).to(self.device)
            self.value_optimizer = Adam(self.value.parameters(), lr=cfg.value_lr)

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    def sample_action(self, obs: np.ndarray) -> np.ndarray:
        return self.to_env(self.acting.sample(obs))

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.to_env(self.acting.deterministic(obs))

    def anneal_lr(self, step: int) -> float:
        """lr (and value_lr) decayed linearly from its configured value to 0 over `lr_anneal_steps`
        env steps; returns the policy's lr."""
        cfg = self.cfg
        if cfg.lr_anneal_steps is not None:
            left = lr_left(step, cfg.lr_anneal_steps)
            self.optimizer.param_groups[0]["lr"] = cfg.lr * left
            if self.value is not None:
                self.value_optimizer.param_groups[0]["lr"] = cfg.value_lr * left
        return self.optimizer.param_groups[0]["lr"]

    def iterate(self, step: int) -> tuple[int, dict[str, float]]:
        cfg = self.cfg
        lr = self.anneal_lr(step)
        # 1. sample N trajectories from pi_theta
        batch = sample_trajectories(self.env, self.sample_action, seed=int(self.rng.integers(2**31)))
        obs, valid = self.tensor(batch.obs), self.tensor(batch.valid)

        # 2. estimate the gradient: weights A_t = (reward-to-go or return) - baseline
        bootstrap = np.zeros(batch.final_obs.shape[0], dtype=np.float32)
        if self.value is not None:
            with torch.inference_mode():
                bootstrap = self.value(self.tensor(batch.final_obs)).cpu().numpy()
        returns = self.tensor(weights(batch, cfg.gamma, cfg.reward_to_go, bootstrap))
        advantages = returns
        if cfg.baseline == "mean":
            advantages = returns - returns[valid].mean()
        elif cfg.baseline == "value":
            with torch.no_grad():
                advantages = returns - self.value(obs)
        if cfg.normalize_advantages:
            mean, std = advantages[valid].mean(), advantages[valid].std()
            advantages = (advantages - mean) / (std + 1e-8)

        # 3. theta <- theta + alpha grad J
        dist = self.policy.distribution(obs)
        loss = policy_gradient_loss(dist.log_prob(self.tensor(batch.actions)), advantages, valid)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

        metrics = {
            "losses/policy_loss": loss.item(),
            "losses/entropy": dist.entropy()[valid].mean().item(),
            "charts/episodic_return": float(batch.episode_returns.mean()),
            "charts/episodic_length": float(batch.episode_lengths.mean()),
            "charts/learning_rate": lr,
        }
        if self.value is not None:
            metrics["losses/value_loss"] = self.fit_value(obs, returns, valid)
        return batch.steps, metrics

    def fit_value(self, obs: torch.Tensor, returns: torch.Tensor, valid: torch.Tensor) -> float:
        """Regress V_phi(s_t) on the sampled returns (the baseline for the next batch)."""
        for _ in range(self.cfg.value_steps):
            loss = ((self.value(obs) - returns) ** 2)[valid].mean()
            self.value_optimizer.zero_grad()
            loss.backward()
            self.value_optimizer.step()
        return loss.item()

    def networks(self) -> dict[str, torch.nn.Module]:
        nets = {"policy": self.policy}
        if self.value is not None:
            nets["value"] = self.value
        return nets

    def state_dict(self) -> dict:
        state = {name: net.state_dict() for name, net in self.networks().items()}
        state["optimizer"] = self.optimizer.state_dict()
        if self.value is not None:
            state["value_optimizer"] = self.value_optimizer.state_dict()
        state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        for name, net in self.networks().items():
            net.load_state_dict(state[name])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.value is not None:
            self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.rng.bit_generator.state = state["rng"]
