"""Actor-critic: the lecture's online box, and its batched synchronous form over N envs.

online (algo.online=true), the lecture's box exactly, on one env:
    1. take action a ~ pi_theta(a|s), get (s, a, s', r)
    2. update V_phi toward the target r + gamma V_phi(s')
    3. evaluate A(s, a) = r + gamma V_phi(s') - V_phi(s)
    4. grad J(theta) ~ grad log pi_theta(a|s) A(s, a)
    5. theta <- theta + alpha grad J(theta)

batched (the default): the same steps for T steps of num_envs envs at once, the target and A by
n-step returns r_t + ... + gamma^(T-t) V_phi(s_T) or by GAE(lambda), plus an entropy bonus, and
steps 2 and 5 taken as one gradient step on the sum of both losses.

A terminal state is worth 0; a time-limit cut bootstraps from V_phi of its final observation.
"""

from __future__ import annotations

import numpy as np
import torch

from rlrun.algos.base import Context
from rlrun.algos.on_policy import OnPolicy, explained_variance
from rlrun.data import discounted_returns, episode_metrics, gae


class ActorCritic(OnPolicy):
    def __init__(self, cfg, ctx: Context):
        super().__init__(cfg, ctx, num_envs=1 if cfg.online else cfg.num_envs)
        if self.cfg.critic_lr is not None:  # two parameter groups: pi's at lr, V's at critic_lr
            critic = {id(p) for p in [*self.net.critic_body.parameters(), *self.net.critic_head.parameters()]}
            actor_group = self.optimizer.param_groups[0]
            actor_group["params"] = [p for p in self.parameters if id(p) not in critic]
            critic_group = [p for p in self.parameters if id(p) in critic]
            self.optimizer.param_groups.append({**actor_group, "params": critic_group, "lr": cfg.critic_lr})
            self.base_lrs.append(cfg.critic_lr)

    def iterate(self, step: int) -> tuple[int, dict[str, float]]:
        lr = self.anneal_lr(step)
        steps, metrics = self.online_box() if self.cfg.online else self.batched_box()
        return steps, {**metrics, "charts/learning_rate": lr}

    def online_box(self) -> tuple[int, dict[str, float]]:
        """The lecture's box once: one transition, one step on V, one on pi."""
        gamma = self.cfg.gamma
        # 1. take action a ~ pi(a|s), get (s, a, s', r); the env's reset step is no transition. With two
        # networks step 2 leaves pi as it is, so the pi(.|s) that sampled a is kept (with its graph) for step 4
        sample = self.sample if self.net.shared else self._sample_keeping_pi
        rollout = self.collector.collect(sample, 1)
        while not rollout.valid[0, 0]:
            rollout = self.collector.collect(sample, 1)
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
        dist = self.net.distribution(s_and_next[:1]) if self.net.shared else self._pi_of_s
        entropy = dist.entropy().mean()
        policy_loss = -(dist.log_prob(self.tensor(rollout.actions[0])) * advantage).mean()
        self.gradient_step(policy_loss - self.cfg.entropy_coef * entropy)

        metrics = {
            "losses/policy_loss": policy_loss.item(),
            "losses/value_loss": value_loss.item(),
            "losses/entropy": entropy.item(),
        }
        return 1, {**metrics, **episode_metrics(rollout)}

    def _sample_keeping_pi(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`sample`, keeping pi(.|obs) with its graph in `_pi_of_s`: the same actions from the same random
        numbers, and one forward pass of the policy less per online box."""
        self._pi_of_s = self.net.distribution(self.tensor(obs))
        return self.sampled(self._pi_of_s)

    def batched_box(self) -> tuple[int, dict[str, float]]:
        cfg = self.cfg
        # 1. take T actions in each of num_envs envs with pi_theta
        rollout = self.collector.collect(self.sample, cfg.T)
        obs = self.tensor(rollout.obs)

        # 2-3. targets r + gamma V(s') and advantages, by n-step returns or GAE(lambda), in numpy
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
        valid = rollout.valid
        if cfg.normalize_advantages and valid.any():
            advantages = (advantages - advantages[valid].mean()) / (advantages[valid].std() + 1e-8)
        # every loss is a mean over the valid steps: each valid step weighs 1 / their number, a reset step 0
        weight = (valid / max(valid.sum(), 1)).astype(np.float32)
        w = self.tensor(weight)

        # 4-5. one step on the policy gradient, the value regression and the entropy bonus
        policy_loss = -(dist.log_prob(self.tensor(rollout.actions)) * self.tensor(advantages * weight)).sum()
        value_loss = 0.5 * ((values - self.tensor(returns)) ** 2 * w).sum()
        loss = policy_loss + cfg.value_coef * value_loss
        with torch.set_grad_enabled(cfg.entropy_coef != 0):  # else only logged: no nodes for backward to visit
            entropy = (dist.entropy() * w).sum()
        if cfg.entropy_coef != 0:
            loss = loss - cfg.entropy_coef * entropy
        self.gradient_step(loss)

        metrics = {
            "losses/policy_loss": policy_loss.item(),
            "losses/value_loss": value_loss.item(),
            "losses/entropy": entropy.item(),
            **explained_variance(v[:-1][valid], returns[valid]),
            **episode_metrics(rollout),
        }
        return rollout.steps, metrics
