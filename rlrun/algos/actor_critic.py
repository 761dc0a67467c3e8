"""Actor-critic: the lecture's online box, and its batched synchronous form over N envs.

online (algo.online=true), the lecture's box exactly, on one env:
    1. take action a ~ pi_theta(a|s), get (s, a, s', r)
    2. update V_phi toward the target r + gamma V_phi(s')
    3. evaluate A(s, a) = r + gamma V_phi(s') - V_phi(s)
    4. grad J(theta) ~ grad log pi_theta(a|s) A(s, a)
    5. theta <- theta + alpha grad J(theta)

batched (the default): the same steps for T steps of N envs at once, the target and A by
n-step returns r_t + ... + gamma^(T-t) V_phi(s_T) or by GAE(lambda), plus an entropy bonus, and
steps 2 and 5 taken as one gradient step on the sum of both losses.

A terminal state is worth 0; a time-limit cut bootstraps from V_phi of its final observation.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rlrun import envs
from rlrun.algos import Context, plain
from rlrun.config import choice, flag, integer, layers, number, optional
from rlrun.data import Rollout, RolloutCollector, discounted_returns, gae
from rlrun.nets import ActorCritic as ActorCriticNet

# The keys actor_critic and ppo share; `OnPolicy` and both boxes read them.
ON_POLICY_RULES = {
    "N": integer(1),
    "T": integer(1),
    "gamma": number(0, 1),
    "gae_lambda": number(0, 1),
    "normalize_advantages": flag(),
    "value_coef": number(0),
    "entropy_coef": number(0),
    "lr": number(0, low_open=True),
    "lr_anneal_steps": optional(integer(1)),
    "max_grad_norm": optional(number(0, low_open=True)),
    "shared": flag(),
    "hidden_sizes": layers(),
    "activation": choice("tanh", "relu"),
    "log_std_init": number(-20, 2),
}

# Online boxes per iterate(): the runner logs, checks for NaNs and may checkpoint between iterations,
# which would cost more than the box itself if done after every transition.
ONLINE_BOXES = 100

RULES = {"online": flag(), "advantage": choice("nstep", "gae"), **ON_POLICY_RULES}


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over the valid entries, without a host round trip (no boolean indexing)."""
    return (x * valid).sum() / valid.sum().clamp(min=1)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """losses/explained_variance = 1 - Var(target - V) / Var(target): 1 is a perfect critic, <= 0 no
    better than a constant. Left out when the targets do not vary (it is undefined, not a divergence)."""
    var = target.var()
    return {} if not var > 0 else {"losses/explained_variance": (1 - (target - predicted).var() / var).item()}


class OnPolicy:
    """What actor-critic and PPO share: the networks, one optimiser, the rollout collector, sampling.

    Each algorithm's `iterate()` is its own box; this holds only the plumbing around it.
    """

    def __init__(self, cfg, ctx: Context, name: str, num_envs: int):
        obs_space, action_space = ctx.spaces
        envs.require_action_space(ctx.env_cfg, action_space, (gym.spaces.Discrete, gym.spaces.Box), name)
        self.cfg, self.device = plain(cfg), ctx.device
        self.net = ActorCriticNet(
            obs_space, action_space, cfg.hidden_sizes, cfg.activation, cfg.log_std_init, cfg.shared
        ).to(self.device)
        # fused: one kernel for all parameters, the cheapest Adam step for many tiny updates
        self.parameters = list(self.net.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=cfg.lr, eps=1e-5, fused=True)
        self.rng = ctx.rng()
        self.collector = RolloutCollector(ctx.make_vec_env(num_envs), seed=int(self.rng.integers(2**31)))
        self.bounds = (action_space.low, action_space.high) if isinstance(action_space, gym.spaces.Box) else None
        self.steps = 0

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    @torch.inference_mode()
    def sample(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(action as sampled, for the log-probability; action clipped to the bounds, for the env)."""
        actions = self.net.distribution(self.tensor(obs)).sample().cpu().numpy()
        return actions, actions if self.bounds is None else np.clip(actions, *self.bounds)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        actions = self.net.deterministic(self.tensor(obs)).cpu().numpy()
        return actions if self.bounds is None else np.clip(actions, *self.bounds)

    def anneal_lr(self) -> float:
        """Decay the learning rate linearly from `lr` to 0 over `lr_anneal_steps` env steps; return it."""
        if self.cfg.lr_anneal_steps is not None:
            self.optimizer.param_groups[0]["lr"] = self.cfg.lr * max(0.0, 1 - self.steps / self.cfg.lr_anneal_steps)
        return self.optimizer.param_groups[0]["lr"]

    def gradient_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        if self.cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.cfg.max_grad_norm)
        self.optimizer.step()

    @staticmethod
    def episode_metrics(*rollouts: Rollout) -> dict[str, float]:
        """Mean return and length of the episodes that ended during these rollouts (none: no entry)."""
        returns = np.concatenate([r.episode_returns for r in rollouts])
        if len(returns) == 0:
            return {}
        return {
            "charts/episodic_return": float(returns.mean()),
            "charts/episodic_length": float(np.concatenate([r.episode_lengths for r in rollouts]).mean()),
        }

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"actor_critic": self.net}

    def state_dict(self) -> dict:
        return {
            "actor_critic": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "steps": self.steps,
            "collector": self.collector.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["actor_critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.steps = state["steps"]
        self.collector.load_state_dict(state["collector"])


class ActorCritic(OnPolicy):
    RULES = RULES

    def __init__(self, cfg, ctx: Context):
        super().__init__(cfg, ctx, "actor_critic", num_envs=1 if cfg.online else cfg.N)

    def iterate(self) -> tuple[int, dict[str, float]]:
        lr = self.anneal_lr()
        steps, metrics = self.online_boxes() if self.cfg.online else self.batched_box()
        return steps, {**metrics, "charts/learning_rate": lr}

    def online_boxes(self) -> tuple[int, dict[str, float]]:
        """ONLINE_BOXES online boxes in a row, each its own transition and update; their mean losses.
        Grouping them only spaces out the runner's per-iteration logging and checks."""
        losses, transitions = [], []
        for _ in range(ONLINE_BOXES):
            transition, box_losses = self.online_box()
            losses.append(box_losses)
            transitions.append(transition)
        policy_loss, value_loss, entropy = torch.stack(losses).mean(0).tolist()
        metrics = {"losses/policy_loss": policy_loss, "losses/value_loss": value_loss, "losses/entropy": entropy}
        return ONLINE_BOXES, {**metrics, **self.episode_metrics(*transitions)}

    def online_box(self) -> tuple[Rollout, torch.Tensor]:
        """The lecture's box once: one transition, one step on V, one on pi. Returns the transition
        and (policy loss, value loss, entropy)."""
        gamma = self.cfg.gamma
        # 1. take action a ~ pi(a|s), get (s, a, s', r); the env's reset step is no transition
        rollout = self.collector.collect(self.sample, 1)
        while not rollout.valid[0, 0]:
            rollout = self.collector.collect(self.sample, 1)
        s_and_next = self.tensor(rollout.obs[:, 0])  # [s, s']
        r = self.tensor(rollout.rewards[0])
        not_terminal = self.tensor(~rollout.terminated[0])

        # 2. update V toward r + gamma V(s') (a time-limit cut keeps V(s'); a terminal has none)
        v, v_next = self.net.value(s_and_next)
        target = r + gamma * not_terminal * v_next.detach()
        value_loss = 0.5 * ((v - target) ** 2).mean()
        self.gradient_step(value_loss)

        # 3. A = r + gamma V(s') - V(s), with the updated V
        with torch.no_grad():
            v, v_next = self.net.value(s_and_next)
            advantage = r + gamma * not_terminal * v_next - v

        # 4. grad J ~ grad log pi(a|s) A (plus the entropy bonus); 5. theta <- theta + alpha grad J
        dist = self.net.distribution(s_and_next[:1])
        entropy = dist.entropy().mean()
        policy_loss = -(dist.log_prob(self.tensor(rollout.actions[0])) * advantage).mean()
        self.gradient_step(policy_loss - self.cfg.entropy_coef * entropy)

        self.steps += 1
        return rollout, torch.stack([policy_loss.detach(), value_loss.detach(), entropy.detach()])

    def batched_box(self) -> tuple[int, dict[str, float]]:
        cfg = self.cfg
        # 1. take T actions in each of N envs with pi_theta
        rollout = self.collector.collect(self.sample, cfg.T)
        obs, valid = self.tensor(rollout.obs), self.tensor(rollout.valid)

        # 2-3. targets r + gamma V(s') and advantages, by n-step returns or GAE(lambda)
        dist, values = self.net(obs[:-1])
        with torch.no_grad():
            v = torch.cat([values, self.net.value(obs[-1])[None]]).cpu().numpy()
        args = rollout.rewards, rollout.terminated, rollout.truncated
        if cfg.advantage == "nstep":
            returns = discounted_returns(*args, v[1:], cfg.gamma)
            advantages = returns - v[:-1]
        else:
            advantages = gae(rollout.rewards, v, rollout.terminated, rollout.truncated, rollout.valid, cfg.gamma,
                             cfg.gae_lambda)
            returns = advantages + v[:-1]
        returns, advantages = self.tensor(returns), self.tensor(advantages)
        if cfg.normalize_advantages:
            mean = masked_mean(advantages, valid)
            std = masked_mean((advantages - mean) ** 2, valid).sqrt()
            advantages = (advantages - mean) / (std + 1e-8)

        # 4-5. one step on the policy gradient, the value regression and the entropy bonus
        policy_loss = -masked_mean(dist.log_prob(self.tensor(rollout.actions)) * advantages, valid)
        value_loss = 0.5 * masked_mean((values - returns) ** 2, valid)
        entropy = masked_mean(dist.entropy(), valid)
        self.gradient_step(policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy)

        self.steps += rollout.steps
        metrics = {
            "losses/policy_loss": policy_loss.item(),
            "losses/value_loss": value_loss.item(),
            "losses/entropy": entropy.item(),
            **explained_variance(values[valid].detach(), returns[valid]),
            **self.episode_metrics(rollout),
        }
        return rollout.steps, metrics
