"""PPO: the actor-critic policy gradient with a trust region kept by clipping the probability ratio.

    1. take T actions in each of num_envs envs with pi_old = pi_theta
    2. estimate A by GAE(lambda) from V_phi, and the value targets R = A + V_phi(s)
    3. `epochs` times, over minibatches of the rollout, step on
         -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)] + value_coef (V_phi(s) - R)^2 - entropy_coef H,
       rho = pi_theta(a|s) / pi_old(a|s)

A terminal state is worth 0; a time-limit cut bootstraps from V_phi of its final observation.
"""

from __future__ import annotations

import torch

from rlrun.algos.base import Context
from rlrun.algos.on_policy import OnPolicy, explained_variance
from rlrun.data import episode_metrics, gae


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip_range: float) -> torch.Tensor:
    """-E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)]: the loss whose descent is PPO's policy step."""
    return -torch.min(ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages).mean()


class PPO(OnPolicy):
    def __init__(self, cfg, ctx: Context):
        super().__init__(cfg, ctx, num_envs=cfg.num_envs)

    def iterate(self, step: int) -> tuple[int, dict[str, float]]:
        cfg = self.cfg
        lr = self.anneal_lr(step)

        # 1. take T actions in each of num_envs envs with pi_old
        rollout = self.collector.collect(self.sample, cfg.T)
        obs = self.tensor(rollout.obs)

        # 2. GAE(lambda) advantages and value targets; keep pi_old(a|s) and V_old(s) of the valid steps
        with torch.no_grad():
            dist, values = self.net(obs[:-1])
            old_log_probs = dist.log_prob(self.tensor(rollout.actions))
            v = torch.cat([values, self.net.value(obs[-1])[None]]).cpu().numpy()
        advantages = gae(rollout.rewards, v, rollout.terminated, rollout.truncated, rollout.valid, cfg.gamma,
                         cfg.gae_lambda)
        valid = self.tensor(rollout.valid)
        batch = {
            "obs": obs[:-1][valid],
            "actions": self.tensor(rollout.actions)[valid],
            "old_log_probs": old_log_probs[valid],
            "old_values": values[valid],
            "advantages": self.tensor(advantages)[valid],
        }
        batch["returns"] = batch["advantages"] + batch["old_values"]

        # 3. epochs of minibatch steps on the clipped surrogate, the value loss and the entropy bonus
        size = len(batch["obs"])
        sums = torch.zeros(5, device=self.device)
        updates = 0
        for _ in range(cfg.epochs):
            for index in torch.randperm(size, device=self.device).split(cfg.minibatch_size):
                sums += self.minibatch_step({k: x[index] for k, x in batch.items()})
                updates += 1

        policy_loss, value_loss, entropy, approx_kl, clipfrac = (sums / max(updates, 1)).tolist()
        with torch.no_grad():
            new_values = self.net.value(batch["obs"])
        metrics = {
            "losses/policy_loss": policy_loss,
            "losses/value_loss": value_loss,
            "losses/entropy": entropy,
            "losses/approx_kl": approx_kl,
            "losses/clipfrac": clipfrac,
            **explained_variance(new_values, batch["returns"]),
            "charts/learning_rate": lr,
            **episode_metrics(rollout),
        }
        return rollout.steps, metrics

    def minibatch_step(self, mb: dict[str, torch.Tensor]) -> torch.Tensor:
        """One gradient step; returns (policy loss, value loss, entropy, approx KL, clip fraction)."""
        cfg = self.cfg
        dist, values = self.net(mb["obs"])
        log_ratio = dist.log_prob(mb["actions"]) - mb["old_log_probs"]
        ratio = log_ratio.exp()
        advantages = mb["advantages"]
        if cfg.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = clipped_surrogate(ratio, advantages, cfg.clip_range)
        value_error = (values - mb["returns"]) ** 2
        if cfg.value_clip is not None:
            clipped = mb["old_values"] + (values - mb["old_values"]).clamp(-cfg.value_clip, cfg.value_clip)
            value_error = torch.max(value_error, (clipped - mb["returns"]) ** 2)
        value_loss = 0.5 * value_error.mean()
        entropy = dist.entropy().mean()
        self.gradient_step(policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy)
        with torch.no_grad():
            # the (ratio - 1) - log ratio estimator of KL(pi_old || pi_theta): unbiased and never negative
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clipfrac = ((ratio - 1).abs() > cfg.clip_range).float().mean()
        return torch.stack([policy_loss.detach(), value_loss.detach(), entropy.detach(), approx_kl, clipfrac])
