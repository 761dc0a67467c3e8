"""Behaviour cloning: pi_theta fitted by maximum likelihood to a dataset's (s, a), offline.

    1. keep the best `filter_top` fraction of the dataset's episodes by return (1: all of them)
    2. S times: theta <- theta + lr grad 1/B sum_i log pi_theta(a_i|s_i)   on a minibatch of the kept pairs

The lecture compares this with the policy gradient, which is the same maximum likelihood with each
trajectory weighted by its return ("good stuff is made more likely"). Plain BC weighs every
trajectory alike, so it copies the data's behaviour, good and bad; filtered BC weighs the best
episodes 1 and the others 0, the crudest form of that weighting.

The run's budget and x-axis count gradient steps, as offline fqi's do.
"""

from __future__ import annotations

import math

import numpy as np

from rlrun import datasets
from rlrun.algos.base import Context
from rlrun.algos.imitation import Imitation
from rlrun.config import ConfigError


def best_episodes(data: dict, fraction: float) -> np.ndarray:
    """Ids of the ceil(fraction * episodes) episodes with the highest returns (ties: the earlier id)."""
    ids, returns = datasets.episode_returns(data)
    kept = math.ceil(fraction * len(ids))
    return ids[np.argsort(-returns, kind="stable")[:kept]]


class BehaviourCloning(Imitation):
    x_axis = "gradient_steps"

    def __init__(self, cfg, ctx: Context):
        if cfg.dataset is None:
            raise ConfigError("algo.dataset", None, "a dataset to imitate: an .npz file (rlrun-collect), or minari:ID")
        super().__init__(cfg, ctx)
        data = datasets.load(cfg.dataset, *ctx.spaces)
        # 1. the best episodes by return
        kept = datasets.select_episodes(data, best_episodes(data, cfg.filter_top))
        _, returns = datasets.episode_returns(kept)
        self.data_metrics = {
            "charts/dataset_return": float(returns.mean()),  # of the kept episodes
            "charts/dataset_pairs": float(len(kept["rewards"])),
        }
        self.obs = self.tensor(kept["observations"])
        self.actions = self.labels(kept["actions"])

    def iterate(self, step: int) -> tuple[int, dict[str, float]]:
        # 2. S gradient steps of maximum likelihood on the kept pairs
        return self.cfg.S, {**self.fit(self.obs, self.actions, self.cfg.S), **self.data_metrics}
