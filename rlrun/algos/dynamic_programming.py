"""Policy iteration and value iteration: the lecture's two boxes, exactly, on an env whose model is known.

Policy iteration, one `iterate()` per pass of the box:
    1. evaluate A^pi(s, a) = r(s, a) + gamma E[V^pi(s')] - V^pi(s)
    2. set pi(s) <- argmax_a A^pi(s, a); stop once no state changes its action
Value iteration, one `iterate()` per sweep:
    1. set Q(s, a) <- r(s, a) + gamma E[V(s')]
    2. set V(s) <- max_a Q(s, a); stop once max_s |dV(s)| < theta

The model is gymnasium's `env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...]`.
Neither algorithm steps the env to learn: the run's x-axis counts iterations (`x_axis`), `finished`
turns true once the box has converged, and the runner evaluates the greedy policy on the real env
and writes V, pi and their picture (`artefacts`) like any other algorithm's results.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import gymnasium as gym
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rlrun.algos.base import Algorithm, Context
from rlrun.config import ConfigError

log = logging.getLogger("rlrun")

# The presets in configs/env/ whose envs expose a model; named in the error for any other env.
MODEL_ENVS = ("frozenlake", "taxi", "cliffwalking")

# Advantages this small are round-off, not a better action; following them makes exact ties flip back and forth.
IMPROVEMENT_TOLERANCE = 1e-9

# Grid worlds drawn as a heat map: their layout and the direction each action moves in.
ARROWS = {"FrozenLakeEnv": "←↓→↑", "CliffWalkingEnv": "↑→↓←"}

VALUE_FILE, POLICY_FILE, PICTURE_FILE = "values.npy", "policy.npy", "values.png"


@dataclass
class Model:
    """A known model as flat arrays, one entry per outcome (state, action) -> next_state.

    An outcome that ends the episode adds no value of the state it lands in. Terminal states (where
    episodes from the start states only ever arrive by ending) have no outcomes: their Q and V are 0.
    """

    n_states: int
    n_actions: int
    state: np.ndarray  # [M] int
    action: np.ndarray  # [M] int
    next_state: np.ndarray  # [M] int
    prob: np.ndarray  # [M] float
    reward: np.ndarray  # [M] float
    terminated: np.ndarray  # [M] bool
    terminal: np.ndarray  # [S] bool
    unreachable: np.ndarray  # [S] bool: never visited from the start states (CliffWalking's cliff)

    @classmethod
    def from_table(cls, P: dict, n_states: int, n_actions: int, initial: np.ndarray | None = None) -> Model:
        """From gymnasium's table P[s][a] = [(prob, next_state, reward, terminated), ...].

        `initial` marks the start states; without it every state counts as one, so none is terminal.
        """
        rows = [
            (s, a, int(s2), float(p), float(r), bool(done))
            for s in range(n_states)
            for a in range(n_actions)
            for p, s2, r, done in P[s][a]
            if p > 0
        ]
        state, action, next_state, prob, reward, terminated = (np.array(col) for col in zip(*rows))
        terminated = terminated.astype(bool)
        visited = np.ones(n_states, dtype=bool) if initial is None else initial.copy()
        while True:  # grow the states an episode can be in, from the start states on
            going_on = ~terminated & visited[state]
            grown = visited | (np.bincount(next_state[going_on], minlength=n_states) > 0)
            if (grown == visited).all():
                break
            visited = grown
        ended_in = np.bincount(next_state[terminated & visited[state]], minlength=n_states) > 0
        terminal = ended_in & ~visited
        unreachable = ~visited & ~terminal
        keep = ~terminal[state]
        return cls(
            n_states,
            n_actions,
            state[keep],
            action[keep],
            next_state[keep],
            prob[keep],
            reward[keep],
            terminated[keep],
            terminal,
            unreachable,
        )

    @cached_property
    def pair(self) -> np.ndarray:
        """Each outcome's (state, action) as one flat index s * A + a."""
        return self.state * self.n_actions + self.action

    @cached_property
    def r(self) -> np.ndarray:
        """r(s, a) = E[reward | s, a], [S, A]."""
        return self.expect(self.prob * self.reward)

    @cached_property
    def going_on(self) -> np.ndarray:
        """Probability of each outcome that the episode goes on (0 where it terminates)."""
        return self.prob * ~self.terminated

    def expect(self, weighted: np.ndarray) -> np.ndarray:
        """Sum per (state, action) of per-outcome values already weighted by probability, [S, A]."""
        size = self.n_states * self.n_actions
        return np.bincount(self.pair, weighted, minlength=size).reshape(self.n_states, self.n_actions)

    def backup(self, V: np.ndarray, gamma: float) -> np.ndarray:
        """Q(s, a) = r(s, a) + gamma E[V(s')], with no V(s') after an outcome that ends the episode."""
        return self.r + gamma * self.expect(self.going_on * V[self.next_state])

    def policy_model(self, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """r_pi [S] and P_pi [S, S] (probabilities of going on to s') of the deterministic policy pi."""
        chosen = self.action == pi[self.state]
        P_pi = np.zeros((self.n_states, self.n_states))
        np.add.at(P_pi, (self.state[chosen], self.next_state[chosen]), self.going_on[chosen])
        return self.r[np.arange(self.n_states), pi], P_pi

    def has_endless_policy(self) -> bool:
        """Whether some policy can keep an episode going forever (then gamma = 1 values can be infinite).

        The largest set X of non-terminal states where every state has an action whose outcomes all
        go on inside X; such a policy exists exactly when X is not empty.
        """
        inside = ~self.terminal
        while True:
            leaves = self.terminated | ~inside[self.next_state]
            can_stay = self.expect(leaves.astype(float)) == 0
            can_stay &= self.expect(self.prob) > 0
            still = inside & can_stay.any(axis=1)
            if (still == inside).all():
                return bool(inside.any())
            inside = still


def extract_model(ctx: Context, algo: str) -> tuple[Model, gym.Env]:
    """The model of the env in `ctx`, and one instance of that env; a ConfigError if it has none."""
    env = ctx.make_env()
    unwrapped = env.unwrapped
    discrete = isinstance(env.observation_space, gym.spaces.Discrete) and isinstance(
        env.action_space, gym.spaces.Discrete
    )
    if not (discrete and isinstance(getattr(unwrapped, "P", None), dict)):
        env.close()
        raise ConfigError(
            "env",
            ctx.env_cfg.name,
            f"an env with a known model (discrete states and actions, unwrapped.P) for algo={algo}: "
            + ", ".join(MODEL_ENVS),
        )
    initial = getattr(unwrapped, "initial_state_distrib", None)
    initial = None if initial is None else np.asarray(initial) > 0
    model = Model.from_table(unwrapped.P, int(env.observation_space.n), int(env.action_space.n), initial)
    return model, env


def check_gamma(model: Model, gamma: float, env_name: str) -> None:
    """gamma = 1 only where every policy ends: elsewhere some values are infinite or not unique."""
    if gamma == 1 and model.has_endless_policy():
        raise ConfigError(
            "algo.gamma",
            gamma,
            f"a number in [0, 1) for env={env_name}: some policies there never reach a terminal state, "
            "so with gamma = 1 their values need not be finite (try 0.999)",
        )


def value_picture(env: gym.Env, model: Model, V: np.ndarray, pi: np.ndarray, title: str) -> np.ndarray | None:
    """A heat map of V over a grid world, as [H, W, 3] uint8; None for an env that is not a grid world
    known here. A cell an episode can be in shows V(s) as its colour (the colour bar's scale) and its
    greedy action as an arrow; the start cells are outlined and named. A cell where episodes end
    (goal, hole) is grey and named instead: V = 0 there by definition, so colouring it would only
    stretch the scale. A cell no episode is ever in (CliffWalking's cliff) is hatched red and named."""
    unwrapped = env.unwrapped
    arrows = ARROWS.get(type(unwrapped).__name__)
    if arrows is None:
        return None
    desc = getattr(unwrapped, "desc", None)
    shape = desc.shape if desc is not None else tuple(unwrapped.shape)
    rows, cols = shape
    start = np.asarray(unwrapped.initial_state_distrib) > 0
    live = ~model.terminal & ~model.unreachable
    never_there = "cliff" if type(unwrapped).__name__ == "CliffWalkingEnv" else "unreached"
    square_x, square_y = np.array([-1, 1, 1, -1]), np.array([-1, -1, 1, 1])  # corners, in half-widths from the centre
    fig = Figure(figsize=(0.6 * cols + 1.6, 0.6 * rows + 1.3), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(np.where(live, V, np.nan).reshape(shape), cmap="viridis")
    fig.colorbar(image, cax=ax.inset_axes([1.04, 0.0, 0.05, 1.0])).set_label("V(s)")  # as tall as the map
    ended = set()
    for s in range(model.n_states):
        row, col = divmod(s, cols)
        cell = col + 0.5 * square_x, row + 0.5 * square_y
        if live[s]:
            red, green, blue, _ = image.cmap(image.norm(V[s]))
            ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
            ax.text(col, row + 0.05, arrows[pi[s]], ha="center", va="center", color=ink, fontsize=11)
        elif model.terminal[s]:
            name = "hole" if desc is not None and desc[row, col] == b"H" else "goal"
            ended.add(name)
            ink = "black"
            ax.fill(*cell, facecolor="0.85", edgecolor="0.6", linewidth=0.5)
            weight = "bold" if name == "goal" else "normal"
            ax.text(col, row, name, ha="center", va="center", color=ink, fontsize=8, weight=weight)
        else:
            ink = "darkred"
            ax.fill(*cell, facecolor="mistyrose", edgecolor="indianred", hatch="///", linewidth=0)
            ax.text(col, row, never_there, ha="center", va="center", color=ink, fontsize=8)
        if start[s]:
            ax.fill(col + 0.44 * square_x, row + 0.44 * square_y, fill=False, edgecolor="orangered", linewidth=2.5)
            ax.text(col, row - 0.3, "start", ha="center", va="center", color=ink, fontsize=6.5)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    notes = ["arrow: greedy action"]
    if ended:
        notes.append(f"{' / '.join(sorted(ended))}: the episode ends there (V = 0, not coloured)")
    if model.unreachable.any():
        notes.append(f"{never_there}: an episode is never there (no V)")
    ax.set_xlabel("\n".join(notes), fontsize=7)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class Solution(torch.nn.Module):
    """V(s) and the greedy pi(s) as buffers, so that model.pt and `load_policy` hold them as networks."""

    def __init__(self, n_states: int):
        super().__init__()
        self.register_buffer("values", torch.zeros(n_states, dtype=torch.float64))
        self.register_buffer("policy", torch.zeros(n_states, dtype=torch.int64))


class DynamicProgramming(Algorithm):
    """What both boxes share: the model, V and pi, the pictures and files."""

    x_axis = "iterations"

    def __init__(self, cfg, ctx: Context):
        self.cfg = cfg
        self.model, self.env = extract_model(ctx, cfg.name)
        check_gamma(self.model, cfg.gamma, ctx.env_cfg.name)
        self.solution = Solution(self.model.n_states)
        # numpy views of the buffers: the boxes write V and pi in place, the checkpoint sees it
        self.V = self.solution.values.numpy()
        self.pi = self.solution.policy.numpy()
        self.iteration = 0
        self.finished = False

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The greedy policy, for a batch of states."""
        return self.pi[np.asarray(obs, dtype=np.int64)]

    def report(self, residual: float, changes: int, converged: bool) -> tuple[int, dict]:
        """This iteration's step count and metrics, with a picture of V at iterations 1, 2, 4, 8, ..."""
        self.iteration += 1
        self.finished = converged or self.iteration >= self.cfg.max_iterations
        metrics = {
            "dp/bellman_residual": residual,
            "dp/mean_value": float(self.V.mean()),
            "dp/policy_changes": changes,
        }
        if self.finished and not converged:
            log.warning("%s stopped at max_iterations=%d before converging", self.cfg.name, self.cfg.max_iterations)
        # the spread of V over iterations without a picture per sweep; the last one is in `artefacts`
        if self.iteration & (self.iteration - 1) == 0:
            picture = self.picture()
            if picture is not None:
                metrics["dp/value_map"] = picture
        return 1, metrics

    def picture(self) -> np.ndarray | None:
        title = f"{self.cfg.name}, iteration {self.iteration}: V(s) and greedy action"
        return value_picture(self.env, self.model, self.V, self.pi, title)

    def artefacts(self) -> dict:
        files = {VALUE_FILE: self.V, POLICY_FILE: self.pi}
        picture = self.picture()
        if picture is not None:
            files[PICTURE_FILE] = picture
        return files

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"solution": self.solution}

    def state_dict(self) -> dict:
        return {"solution": self.solution.state_dict(), "iteration": self.iteration, "finished": self.finished}

    def load_state_dict(self, state: dict) -> None:
        self.solution.load_state_dict(state["solution"])
        self.iteration, self.finished = state["iteration"], state["finished"]


class ValueIteration(DynamicProgramming):
    def iterate(self, step: int) -> tuple[int, dict]:
        # 1. Q(s, a) <- r(s, a) + gamma E[V(s')]
        Q = self.model.backup(self.V, self.cfg.gamma)
        # 2. V(s) <- max_a Q(s, a)
        new_V = Q.max(axis=1)
        residual = float(np.abs(new_V - self.V).max())
        self.V[:] = new_V
        # the greedy policy, keeping the current action unless another is strictly better
        better = new_V > Q[np.arange(self.model.n_states), self.pi] + IMPROVEMENT_TOLERANCE
        changes = int(better.sum())
        self.pi[better] = Q[better].argmax(axis=1)
        return self.report(residual, changes, converged=residual < self.cfg.theta)


class PolicyIteration(DynamicProgramming):
    def iterate(self, step: int) -> tuple[int, dict]:
        # 1. evaluate V^pi, then A^pi(s, a) = r(s, a) + gamma E[V^pi(s')] - V^pi(s)
        old_V = self.V.copy()
        self.V[:] = self.evaluate_policy()
        A = self.model.backup(self.V, self.cfg.gamma) - self.V[:, None]
        # 2. pi(s) <- argmax_a A^pi(s, a), keeping the current action unless another is strictly better
        better = A.max(axis=1) > IMPROVEMENT_TOLERANCE
        changes = int(better.sum())
        self.pi[better] = A[better].argmax(axis=1)
        residual = float(np.abs(self.V - old_V).max())
        return self.report(residual, changes, converged=changes == 0)

    def evaluate_policy(self) -> np.ndarray:
        """V^pi: the exact solution of V = r_pi + gamma P_pi V, or sweeps of that update (from the
        previous V) until the largest change is below theta."""
        r_pi, P_pi = self.model.policy_model(self.pi)
        gamma = self.cfg.gamma
        if self.cfg.evaluation == "exact":
            return np.linalg.solve(np.eye(self.model.n_states) - gamma * P_pi, r_pi)
        V = self.V.copy()
        for _ in range(self.cfg.max_iterations):
            new_V = r_pi + gamma * P_pi @ V
            residual = np.abs(new_V - V).max()
            V = new_V
            if residual < self.cfg.theta:
                break
        return V
