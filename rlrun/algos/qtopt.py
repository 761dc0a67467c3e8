"""QT-Opt-style Q-learning for Box actions: fitted Q-iteration with the max over continuous
actions taken by the cross-entropy method (rlrun.cem), both to act and for the targets:

    1. collect N transitions with a = CEM argmax_a Q(s, a) plus Gaussian noise, into a replay buffer
    2. K times:  y_i <- r_i + gamma min_j Q'_j(s'_i, a*_i),  a*_i = argmax_a' Q'_1(s'_i, a')
                 (argmax by CEM; no value after a terminal), for the S minibatches of step 3 at once
    3.           S times: phi_j <- phi_j - lr grad 1/2 sum_i ||Q_j(s_i, a_i) - y_i||^2, j = 1, 2

Clipped double Q: two Q networks, each with a target copy; the targets value the next action by
the smaller of the two target values, which keeps the max over a noisy Q from inflating them. The
next action is the CEM maximum of the first target network alone, as TD3 takes it from one actor:
searching the min of both would double the CEM's arithmetic, most of a gradient step's time.
Acting, where the search is over a handful of states, maximises the min of both.
"""

from __future__ import annotations

import numpy as np
import torch

from rlrun import cem
from rlrun.algos.base import Context
from rlrun.algos.fitted_q import FittedQ
from rlrun.buffers import Transitions
from rlrun.data import Observations, batch_len, map_obs
from rlrun.nets import StateActionQ, adam


class QTOpt(FittedQ):
    def __init__(self, cfg, ctx: Context):
        obs_space, action_space = ctx.spaces
        q = StateActionQ(obs_space, action_space, cfg.hidden_sizes, cfg.activation, n=2)
        super().__init__(cfg, ctx, q, lambda params: adam(params, cfg.lr))
        self.low = torch.as_tensor(action_space.low, dtype=torch.float32, device=self.device)
        self.high = torch.as_tensor(action_space.high, dtype=torch.float32, device=self.device)
        # separate streams, so how often the runner evaluates never changes what training draws
        self.train_generator = torch.Generator(self.device).manual_seed(ctx.seed)
        self.eval_generator = torch.Generator(self.device).manual_seed(ctx.seed + 1)
        self.elite_std = torch.zeros(())  # of the last targets' search, logged with each gradient step

    def greedy(self, q: StateActionQ, obs, generator: torch.Generator, first: int | None = None) -> cem.CEMResult:
        """CEM's argmax_a min_j Q_j(s, a) for each state of the batch (a tensor, or a dict of them);
        with `first`, the min over Q_1 .. Q_first only."""
        cfg = self.cfg

        def value(actions: torch.Tensor) -> torch.Tensor:
            states = map_obs(lambda x: x.unsqueeze(1).expand(-1, actions.shape[1], *x.shape[1:]), obs)
            return q(states, actions, first).min(0).values

        return cem.maximize(
            value, batch_len(obs), self.low, self.high,
            cfg.cem_iterations, cfg.cem_samples, cfg.cem_elites, cfg.cem_init_std, generator,
        )

    @torch.inference_mode()
    def act(self, obs: Observations) -> np.ndarray:
        return self.greedy(self.q, self.tensor(obs), self.eval_generator).actions.cpu().numpy()

    @torch.inference_mode()
    def collection_actions(self, obs: Observations, step: int) -> np.ndarray:
        """Uniform actions before learning starts; then the CEM action plus Gaussian noise."""
        low, high = self.low.cpu().numpy(), self.high.cpu().numpy()
        if step < self.cfg.learning_starts:
            actions = self.rng.uniform(low, high, size=(batch_len(obs), *low.shape))
        else:
            actions = self.greedy(self.q, self.tensor(obs), self.train_generator).actions.cpu().numpy()
            actions += self.rng.normal(size=actions.shape) * self.cfg.exploration_noise * (high - low) / 2
        return np.clip(actions, low, high).astype(np.float32)

    def targets(self, batch: Transitions) -> torch.Tensor:
        """2. y = r + gamma min_j Q'_j(s', a*), a* = argmax_a' Q'_1(s', a') by CEM, for the iteration's S
        minibatches in one search: the CEM's work grows with the rows, its fixed cost does not."""
        with torch.no_grad():
            best = self.greedy(self.q_target, batch.next_obs, self.train_generator, first=1)
            next_value = self.q_target(batch.next_obs, best.actions).min(0).values
            self.elite_std = best.elite_std.mean()
            return batch.rewards + batch.bootstrap_weights(self.cfg.gamma) * next_value * ~batch.terminated

    def gradient_step(self, batch: Transitions, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """3. a step on both Qs' squared errors, L = sum_j 1/2 mean_i (Q_j(s_i, a_i) - y_i)^2, its gradient
        taken by hand as fqi's is: dL/dQ_j(s_i, a_i) = (Q_j(s_i, a_i) - y_i) / B, backpropagated through
        both networks (StateActionQ.backward_by_hand)."""
        with torch.no_grad():
            q, inputs = self.q.forward_keeping_inputs(batch.obs, batch.actions)  # [2, B]
            error = q - y
            loss = 0.5 * (error**2).mean(1).sum()
            self.q.backward_by_hand(inputs, error / len(y))
        self.optimizer.step()
        return {"losses/q_loss": loss, "losses/q_values": q.mean(), "losses/cem_elite_std": self.elite_std}

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "train_generator": self.train_generator.get_state(),
            "eval_generator": self.eval_generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.train_generator.set_state(state["train_generator"])
        self.eval_generator.set_state(state["eval_generator"])
