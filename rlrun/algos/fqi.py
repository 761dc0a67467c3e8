"""Fitted Q-iteration, as the lecture's box, for Discrete actions:

    1. collect N transitions {(s_i, a_i, s'_i, r_i)} with the collection policy, into a replay buffer
    2. K times:  y_i <- r_i + gamma max_a' Q_phi'(s'_i, a')     (no value after a true terminal)
    3.           S times: phi <- phi - lr grad 1/2 sum_i ||Q_phi(s_i, a_i) - y_i||^2   (on a minibatch)

The box's loop is rlrun.algos.fitted_q's; this file holds the targets and the collection policy.
phi' is the target network: a copy of phi refreshed at the start of every iteration, or a Polyak
average updated every step. Targets are computed per minibatch from phi'. Without double Q that is
the same as computing them for the whole buffer first; with double Q (the default) a' is chosen by
the current phi, which moves between minibatches, so the targets of one iteration drift with it.

Step 3's gradient is written out, as the box writes it: the error Q_phi(s_i, a_i) - y_i at the action
taken, backpropagated through Q's MLP by `QNetwork.backward_by_hand`. Autograd gives the same numbers
(the tests hold the two side by side; bit for bit where the batch size is a power of two, to the last
bit otherwise), but its graph costs about as much as the matrix products in steps this small; by hand,
double Q's Q_phi(s', .) also rides in the pass over s.

Offline (`dataset` set): step 1 is skipped; the buffer is the dataset, and the runner's budget and
x-axis count gradient steps.
"""

from __future__ import annotations

import numpy as np
import torch

from rlrun import datasets
from rlrun.algos.base import Context
from rlrun.algos.fitted_q import FittedQ
from rlrun.buffers import Transitions
from rlrun.config import ConfigError
from rlrun.data import Observations, batch_len, map_obs
from rlrun.nets import QNetwork, adam, clip_grad_norm_


def q_targets(batch: Transitions, gamma: float, next_q_target: torch.Tensor, next_q_online: torch.Tensor | None):
    """y = r + gamma max_a' Q'(s', a'), and y = r after a terminal state (gamma^m for rows of m steps).

    `next_q_target` [B, n_actions] is Q_phi'(s', .). With double Q, `next_q_online` (Q_phi(s', .))
    picks a' and Q_phi' values it, which curbs the max's overestimation.
    """
    if next_q_online is None:
        next_value = next_q_target.max(-1).values
    else:
        next_value = next_q_target.gather(-1, next_q_online.argmax(-1, keepdim=True)).squeeze(-1)
    return batch.rewards + batch.bootstrap_weights(gamma) * next_value * ~batch.terminated


def epsilon_at(step: int, start: float, end: float, decay_steps: int) -> float:
    """Linear from `start` to `end` over the first `decay_steps` env steps, then `end`."""
    if step >= decay_steps:
        return end
    return start + (end - start) * step / decay_steps


class FittedQIteration(FittedQ):
    def __init__(self, cfg, ctx: Context):
        obs_space, action_space = ctx.spaces
        self.n_actions = int(action_space.n)
        q = QNetwork(obs_space, self.n_actions, cfg.hidden_sizes, cfg.activation, cfg.get("dueling", False))
        dataset = None
        if cfg.dataset is not None:
            dataset = datasets.to_transitions(datasets.load(cfg.dataset, obs_space, action_space))
            if len(dataset) < cfg.batch_size:
                raise ConfigError("algo.batch_size", cfg.batch_size, f"<= the dataset's {len(dataset)} transitions")
        super().__init__(cfg, ctx, q, lambda params: adam(params, cfg.lr), dataset)
        self.q_parameters = list(self.q.parameters())  # listed once: q.parameters() walks the modules at every call

    @torch.inference_mode()
    def act(self, obs: Observations) -> np.ndarray:
        return self.q(self.tensor(obs)).argmax(-1).cpu().numpy()

    def epsilon(self, step: int) -> float:
        cfg = self.cfg
        if cfg.collect == "random" or step < cfg.learning_starts:
            return 1.0
        return epsilon_at(step - cfg.learning_starts, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_decay_steps)

    def collection_metrics(self, step: int) -> dict[str, float]:
        return {"charts/epsilon": self.epsilon(step)}

    def collection_actions(self, obs: Observations, step: int) -> np.ndarray:
        """Epsilon-greedy on the current Q (epsilon = 1 is the random policy)."""
        epsilon = self.epsilon(step)
        random = self.rng.integers(self.n_actions, size=batch_len(obs))
        if epsilon < 1:
            explore = self.rng.random(batch_len(obs)) < epsilon
            random = np.where(explore, random, self.act(obs))
        return random

    def gradient_step(self, batch: Transitions, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """3. phi <- phi - lr grad_phi L, L = 1/2 mean_i (Q_phi(s_i, a_i) - y_i)^2 (or the Huber loss of the error),
        with the gradient taken by hand: dL/dQ_phi(s_i, a_i) = (Q_phi(s_i, a_i) - y_i) / B, zero for the other
        actions, then backpropagated through Q's MLP (QNetwork.backward_by_hand). With double Q, phi's pass
        over the minibatch takes s and s' together: Q_phi(s, .) for the error and Q_phi(s', .) to pick a'."""
        cfg, rows = self.cfg, len(batch)
        with torch.no_grad():
            obs = map_obs(lambda s, s_next: torch.cat([s, s_next]), batch.obs, batch.next_obs) if cfg.double_q else batch.obs
            q, inputs = self.q.forward_keeping_inputs(obs)
            if y is None:  # always here: `targets` leaves them to each step, since double Q's a' is the current phi's
                y = q_targets(batch, cfg.gamma, self.q_target(batch.next_obs), q[rows:] if cfg.double_q else None)
            taken = batch.actions.unsqueeze(-1)
            q_taken = q[:rows].gather(-1, taken).squeeze(-1)
            error = q_taken - y
            if cfg.loss == "huber":  # 1/2 e^2 within 1 of the target, |e| - 1/2 beyond: the slope stays within [-1, 1]
                loss, slope = torch.nn.functional.smooth_l1_loss(q_taken, y), error.clamp(-1.0, 1.0)
            else:
                loss, slope = 0.5 * (error**2).mean(), error
            self.q.backward_by_hand(inputs, torch.zeros_like(q[:rows]).scatter_(-1, taken, (slope / rows).unsqueeze(-1)))
        if cfg.max_grad_norm is not None:
            clip_grad_norm_(self.q_parameters, cfg.max_grad_norm)
        self.optimizer.step()
        return {"losses/q_loss": loss, "losses/q_values": q_taken.mean()}
