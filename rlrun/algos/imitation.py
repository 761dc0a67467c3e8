"""What behaviour cloning and DAgger share: a policy pi_theta fitted by maximum likelihood to
(state, action) pairs, and its optimiser. Each algorithm's `iterate()` is its own box; this is
only the fitting step both of them repeat:

    theta <- theta + lr grad 1/B sum_i log pi_theta(a_i|s_i)     on a minibatch of B pairs

For Discrete actions -log pi is the cross-entropy of the categorical policy with the label; for
Box actions it is the negative log-likelihood of a diagonal Gaussian, whose mean is the action the
policy takes when evaluated.
"""

from __future__ import annotations

import numpy as np
import torch

from rlrun.algos.base import Algorithm, Context, plain
from rlrun.nets import ActionAdapter, Policy, adam


def negative_log_likelihood(policy: Policy, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """-1/B sum_i log pi(a_i|s_i) over a batch (`losses/policy_loss`), and the policy's mean entropy there."""
    dist = policy.distribution(obs)
    return {"losses/policy_loss": -dist.log_prob(actions).mean(), "losses/entropy": dist.entropy().mean()}


class Imitation(Algorithm):
    """pi_theta (rlrun.nets.Policy), its Adam optimiser and a generator of minibatches, for
    algorithms whose improvement step is maximum likelihood on labelled states."""

    def __init__(self, cfg, ctx: Context):
        obs_space, action_space = ctx.spaces
        self.cfg, self.device = plain(cfg), ctx.device
        self.rng = ctx.rng()
        self.to_env = ActionAdapter(action_space)
        self.policy = Policy(obs_space, action_space, cfg.hidden_sizes, cfg.activation, cfg.log_std_init).to(self.device)
        self.optimizer = adam(self.policy.parameters(), cfg.lr)

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    def labels(self, actions: np.ndarray) -> torch.Tensor:
        """Actions as the policy's log-probability takes them: integers (Discrete) or float32 (Box)."""
        return self.tensor(actions.astype(np.float32) if self.to_env.box else actions)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.to_env(self.policy.deterministic(self.tensor(obs)))

    def fit(self, obs: torch.Tensor, actions: torch.Tensor, steps: int) -> dict[str, float]:
        """`steps` gradient steps on -log pi(a|s), each on `batch_size` pairs drawn uniformly (with
        replacement) from the labelled states `obs` and their labels `actions`; the mean of each loss."""
        fitted = []
        for _ in range(steps):
            rows = self.tensor(self.rng.integers(len(obs), size=self.cfg.batch_size))
            losses = negative_log_likelihood(self.policy, obs[rows], actions[rows])
            self.optimizer.zero_grad()
            losses["losses/policy_loss"].backward()
            self.optimizer.step()
            fitted.append(losses)
        return {tag: torch.stack([f[tag].detach() for f in fitted]).mean().item() for tag in fitted[0]}

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy}

    def state_dict(self) -> dict:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
