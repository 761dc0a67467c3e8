"""What actor-critic and PPO share: networks, one optimiser, the rollout collector, sampling, and
the small estimates both log. Each algorithm's `iterate()` is its own box; this is only plumbing."""

from __future__ import annotations

import numpy as np
import torch

from rlrun.algos.base import Algorithm, Context, lr_left, plain
from rlrun.data import RolloutCollector
from rlrun.nets import ActionAdapter, Adam, Distribution, RMSprop, clip_grad_norm_
from rlrun.nets import ActorCritic as ActorCriticNet


def explained_variance(predicted, target) -> dict[str, float]:
    """losses/explained_variance = 1 - Var(target - V) / Var(target) (tensors or numpy arrays): 1 is a
    perfect critic, <= 0 no better than a constant. Left out when the targets do not vary (it is
    undefined, not a divergence)."""
    var = target.var()
    return {} if not var > 0 else {"losses/explained_variance": float(1 - (target - predicted).var() / var)}


class OnPolicy(Algorithm):
    """What actor-critic and PPO share: the networks, one optimiser, the rollout collector, sampling.

    Each algorithm's `iterate()` is its own box; this holds only the plumbing around it.
    """

    def __init__(self, cfg, ctx: Context, num_envs: int):
        obs_space, action_space = ctx.spaces
        self.cfg, self.device = plain(cfg), ctx.device
        self.net = ActorCriticNet(
            obs_space, action_space, cfg.hidden_sizes, cfg.activation, cfg.log_std_init, cfg.shared
        ).to(self.device)
        self.parameters = list(self.net.parameters())
        # A2C's optimiser (and SB3's A2C's), or Adam; a config saved before `optimizer` existed meant Adam
        if cfg.get("optimizer", "adam") == "rmsprop":
            self.optimizer = RMSprop(self.parameters, lr=cfg.lr, alpha=0.99, eps=1e-5)
        else:  # fused: one kernel for all parameters, the cheapest Adam step for many tiny updates
            self.optimizer = Adam(self.parameters, lr=cfg.lr, eps=1e-5, fused=True)
        self.base_lrs = [cfg.lr]  # each parameter group's learning rate before annealing
        self.rng = ctx.rng()
        self.collector = RolloutCollector(ctx.make_vec_env(num_envs), seed=int(self.rng.integers(2**31)))
        self.to_env = ActionAdapter(action_space)
        self.acting = self.net.acting(self.rng)  # numpy on the CPU, torch where numpy does not apply

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    def sample(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(action as sampled, for the log-probability; action clipped to the bounds, for the env)."""
        actions = self.acting.sample(obs)
        return actions, self.to_env(actions)

    def sampled(self, pi: Distribution) -> tuple[np.ndarray, np.ndarray]:
        """`sample`'s pair for actions drawn from `pi` (drawing adds nothing to pi's graph)."""
        actions = pi.sample().cpu().numpy()
        return actions, self.to_env(actions)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.to_env(self.acting.deterministic(obs))

    def anneal_lr(self, step: int) -> float:
        """Decay each parameter group's learning rate linearly from its base to 0 over `lr_anneal_steps`
        env steps; return the first group's (`lr`)."""
        if self.cfg.lr_anneal_steps is not None:
            left = lr_left(step, self.cfg.lr_anneal_steps)
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base * left
        return self.optimizer.param_groups[0]["lr"]

    def gradient_step(self, loss: torch.Tensor) -> None:
        """One optimiser step on `loss`, the gradient's global norm clipped to `max_grad_norm` (nets.clip_grad_norm_:
        torch's arithmetic without the per-call overhead that was a third of a step's time on networks this small)."""
        self.optimizer.zero_grad()
        loss.backward()
        if self.cfg.max_grad_norm is not None:
            clip_grad_norm_(self.parameters, self.cfg.max_grad_norm)  # the online box steps V and pi apart
        self.optimizer.step()

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"actor_critic": self.net}

    def state_dict(self) -> dict:
        return {
            "actor_critic": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "collector": self.collector.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["actor_critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.collector.load_state_dict(state["collector"])


